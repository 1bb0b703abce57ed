"""Peak memory of a training epoch over a dataset, and training speed from the decode cache file vs from RAM.

Not a pytest test (it prints figures and takes minutes): run it as a script, from the repository root::

    python tests/benchmarks/memory_bench.py                          # 25,000 images at 256 px + HAM10000 at 96 px
    python tests/benchmarks/memory_bench.py --images 5000 --side 128 # a smaller generated set (a busy machine)
    python tests/benchmarks/memory_bench.py --images 2000 --side 64 --no-ham --fail-above-mb 1000   # CI (nox -s memory)
    python tests/benchmarks/memory_bench.py --batch 32               # the model's share at a batch for 256 px

Each dataset is measured in a fresh process (peak RSS is per process): load it (decoding it into the cache on
the first run), then pass one full epoch of its training batches through the training pipeline, a few real
optimiser steps of a small model (``--model``, default timm's tiny ``test_resnet``, so the figure is the data
path's and not resnet18's activations, 1.3 GB at batch 128) and the rest gathered and augmented, and report
the peak RSS above the RSS after the imports. The model's share is measured first, one step on a random batch
before any data is loaded ("step alone"): it grows with the batch and the square of the side (test_resnet at
256 px, batch 128: 2.5 GB), so the data path's own share is the difference, printed as "data share". The
generated set is written once under the decode cache folder (``BENCH_CACHE``), never into the repository:
JPEGs in the ISIC layout (train|test/benign|malignant). ``--speed`` then times resnet18 training steps on
HAM10000 at 28 and 96 px with batches read from the cache file and from the same images held in RAM (the
previous loader's path), interleaved in one process, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STEPS = 3  # real optimiser steps per epoch; the other batches are gathered and augmented only
BATCH = 128  # the default --batch; --speed always uses it


def rss_kib(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` (peak) of this process from /proc (Linux), in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def generate(root: Path, images: int, side: int) -> Path:
    """``images`` smooth random JPEGs of ``side`` px in the ISIC layout (80% train), made once."""
    from PIL import Image

    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(0)
    for i in range(images):
        split, label = ("train" if i % 5 else "test"), ("benign", "malignant")[i % 2]
        folder = root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        small = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((side, side), Image.Resampling.BILINEAR).save(folder / f"{i:06d}.jpg")
    done.write_text("")
    return root


def small_training(backbone: str = "resnet18"):
    """``backbone`` under the scratch protocol (its augmentation), one thread: what one epoch's steps run."""
    import torch
    from timm.data import resolve_data_config

    from bench.models.registry import create_backbone
    from bench.protocol.finetune import apply_phase
    from bench.protocol.spec import get_protocol
    from bench.train.optim import optimizer_for, scheduler_for
    from bench.train.pipeline import BatchPipeline

    torch.set_num_threads(1)
    protocol = get_protocol("scratch")
    model, _ = create_backbone(backbone, num_classes=7)
    phase = protocol.phases[0]
    names = set(apply_phase(model, phase))
    opt = optimizer_for(protocol, [p for n, p in model.named_parameters() if n in names], phase.lr)
    sched = scheduler_for(opt, protocol, phase, steps_per_epoch=1000)
    cfg = resolve_data_config({}, model=model)
    return model.train(), opt, sched, BatchPipeline(cfg["mean"], cfg["std"], torch.device("cpu")), protocol


def child(dataset: str, side: int, root: str | None, backbone: str, batch_size: int = BATCH) -> dict:
    """One measurement in this process: load, one epoch, peak RSS above the post-import baseline."""
    import torch

    from bench.data.loading import load_dataset
    from bench.train.loop import train_step

    model, opt, sched, pipeline, protocol = small_training(backbone)
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    baseline = rss_kib("VmRSS")
    gen = torch.Generator().manual_seed(0)
    channels = 1 if dataset == "chest_xray" else 3
    batch = torch.randint(0, 256, (batch_size, channels, side, side), generator=gen, dtype=torch.uint8)
    labels = torch.zeros(batch_size, dtype=torch.long)
    train_step(model, opt, sched, pipeline, batch, labels, protocol.augment, gen)
    step_peak = rss_kib("VmHWM") - baseline  # the model's own share: one step, no dataset
    del batch
    t = time.perf_counter()
    data = load_dataset(dataset, side, Path(root) if root else None)
    load_s = time.perf_counter() - t
    train = data.train
    order = torch.randperm(len(train), generator=gen)
    t = time.perf_counter()
    for step, i in enumerate(range(0, len(train), batch_size)):
        idx = order[i : i + batch_size]
        images, labels = train.images[idx], train.labels[idx]
        if step < STEPS:
            train_step(model, opt, sched, pipeline, images, labels, protocol.augment, gen)
        else:
            pipeline(images, protocol.augment, gen)
    epoch_s = time.perf_counter() - t
    pixels = sum(s.images.numel() for s in (data.train, data.val, data.test))
    return {
        "dataset": dataset,
        "images": len(data.train) + len(data.val) + len(data.test),
        "side": side,
        "pixels_mb": pixels / 1e6,
        "peak_above_baseline_mb": (rss_kib("VmHWM") - baseline) * 1024 / 1e6,
        "step_alone_mb": step_peak * 1024 / 1e6,
        "load_s": load_s,
        "epoch_s": epoch_s,
    }


def speed(sides: tuple[int, ...], steps: int, rounds: int) -> list[dict]:
    """Training-step time with batches read from the cache file vs from RAM, interleaved (ABAB...) per side."""
    import torch

    from bench.data.loading import Split, load_dataset
    from bench.train.loop import train_step

    rows = []
    for side in sides:
        model, opt, sched, pipeline, protocol = small_training()
        on_file = load_dataset("ham10000", side).train
        in_ram = Split(images=on_file.images[:], labels=on_file.labels, ids=on_file.ids)
        gen = torch.Generator().manual_seed(0)
        times: dict[str, list[float]] = {"file": [], "ram": []}
        for _ in range(rounds):
            for name, split in (("file", on_file), ("ram", in_ram)):
                order = torch.randperm(len(split), generator=gen)
                t = time.perf_counter()
                for i in range(steps):
                    idx = order[i * BATCH : (i + 1) * BATCH]
                    train_step(model, opt, sched, pipeline, split.images[idx], split.labels[idx], protocol.augment, gen)
                times[name].append(steps * BATCH / (time.perf_counter() - t))
        gather = {}
        for name, split in (("file", on_file), ("ram", in_ram)):
            t = time.perf_counter()
            for _ in range(50):
                split.images[torch.randperm(len(split), generator=gen)[:BATCH]]
            gather[name] = (time.perf_counter() - t) / 50 * 1000
        file_ips, ram_ips = statistics.median(times["file"]), statistics.median(times["ram"])
        rows.append(
            {
                "side": side,
                "file_img_s": file_ips,
                "ram_img_s": ram_ips,
                "ratio": file_ips / ram_ips,
                "gather_ms_file": gather["file"],
                "gather_ms_ram": gather["ram"],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=25_000, help="generated images (default 25000)")
    parser.add_argument("--side", type=int, default=256, help="generated image side in px (default 256)")
    parser.add_argument("--ham-side", type=int, default=96, help="HAM10000 side in px (default 96)")
    parser.add_argument("--model", default="test_resnet", help="what the real steps train (default test_resnet)")
    parser.add_argument("--batch", type=int, default=BATCH, help=f"batch of the epoch (default {BATCH})")
    parser.add_argument("--no-ham", action="store_true", help="the generated set only (no HAM10000 decode)")
    parser.add_argument("--fail-above-mb", type=float, help="exit 1 when a peak above baseline exceeds this")
    parser.add_argument("--speed", action="store_true", help="also time training from the file vs from RAM")
    parser.add_argument("--speed-steps", type=int, default=4, help="steps per timed round (default 4)")
    parser.add_argument("--speed-rounds", type=int, default=3, help="interleaved rounds per path (default 3)")
    child_args = ("DATASET", "SIDE", "ROOT", "MODEL", "BATCH")
    parser.add_argument("--child", nargs=5, metavar=child_args, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        dataset, side, root, backbone, batch = args.child
        print(json.dumps(child(dataset, int(side), root if root != "-" else None, backbone, int(batch))))
        return

    from bench.paths import cache_dir

    root = generate(cache_dir() / "memory-bench" / f"synthetic-{args.images}-{args.side}px", args.images, args.side)
    cases = [("isic", args.side, str(root))] + ([] if args.no_ham else [("ham10000", args.ham_side, "-")])
    peaks = []
    head = f"{'dataset':<10} {'images':>7} {'px':>4} {'pixels MB':>10} {'peak RSS MB':>12} {'step alone':>11}"
    print(f"{head} {'data share':>11} {'load s':>7} {'epoch s':>8}")
    for dataset, side, data_root in cases:
        out = subprocess.run(
            [sys.executable, __file__, "--child", dataset, str(side), data_root, args.model, str(args.batch)],
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            sys.exit(f"{dataset} at {side} px failed:\n{out.stderr}")
        r = json.loads(out.stdout.strip().splitlines()[-1])
        name = "generated" if dataset == "isic" else dataset
        print(
            f"{name:<10} {r['images']:>7} {side:>4} {r['pixels_mb']:>10.0f} "
            f"{r['peak_above_baseline_mb']:>12.0f} {r['step_alone_mb']:>11.0f} "
            f"{r['peak_above_baseline_mb'] - r['step_alone_mb']:>11.0f} {r['load_s']:>7.1f} {r['epoch_s']:>8.1f}"
        )
        peaks.append(r["peak_above_baseline_mb"])
    print(f"peak RSS: VmHWM above the RSS after imports and {args.model} creation, over one training step on a")
    print(f"random batch (step alone: its share), the load and the epoch ({STEPS} real steps at batch {args.batch},")
    print("the other batches gathered and augmented); data share: peak - step alone; pixels: all splits, uint8")
    if args.fail_above_mb is not None and max(peaks) > args.fail_above_mb:
        sys.exit(f"peak RSS {max(peaks):.0f} MB above baseline exceeds --fail-above-mb {args.fail_above_mb:.0f}")
    if args.speed:
        print(f"\n{'px':>4} {'file img/s':>11} {'RAM img/s':>10} {'ratio':>6} {'gather ms file/RAM':>19}")
        for r in speed((28, args.ham_side), args.speed_steps, args.speed_rounds):
            gather = f"{r['gather_ms_file']:.2f}/{r['gather_ms_ram']:.2f}"
            print(f"{r['side']:>4} {r['file_img_s']:>11.1f} {r['ram_img_s']:>10.1f} {r['ratio']:>6.3f} {gather:>19}")
        print(f"resnet18, batch {BATCH}, 1 thread, training steps with augmentation; median of interleaved rounds")


if __name__ == "__main__":
    main()
