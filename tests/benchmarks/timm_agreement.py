"""The harness's latency figure against timm's ``benchmark.py`` loop, on the same model in the same process.

Not a pytest test (it prints figures and takes minutes): run it as a script, from the repository root::

    OMP_NUM_THREADS=1 python tests/benchmarks/timm_agreement.py     # resnet18, efficientnet_b0; batch 1, 32; 224 px

timm's ``benchmark.py`` is not in the timm wheel. Its inference loop (``InferenceBenchmarkRunner.run`` in
https://github.com/huggingface/pytorch-image-models/blob/main/benchmark.py) is re-stated in :func:`timm_loop`:
eval mode, ``torch.no_grad``, one ``randn`` batch, ``num_warm_iter`` untimed steps, then ``num_bench_iter``
steps each timed with ``perf_counter`` (``torch.cuda.synchronize`` after each on CUDA); its ``step_time``
is the mean ms per batch. The harness side is :func:`bench.latency.measure.measure_latency`, what
``bench latency`` and every run use. The two run interleaved (timm, harness, timm, harness...) on one model
object, so a change in the machine's load hits both; the ratio of each round's pair is reported (median over
rounds), for the mean (timm's statistic) and for the harness's p50 (its headline figure).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from bench.latency.measure import measure_latency
from bench.latency.timing import LatencyConfig
from bench.models.registry import create_backbone


def timm_loop(model: torch.nn.Module, batch: int, side: int, warm: int, iters: int, device: torch.device) -> float:
    """timm ``benchmark.py``'s inference measurement: the mean ms per batch of ``iters`` timed steps."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    model.eval()
    with torch.no_grad():
        inputs = torch.randn((batch, 3, side, side), device=device)

        def step() -> float:
            start = time.perf_counter()
            model(inputs)
            sync()
            return time.perf_counter() - start

        for _ in range(warm):
            step()
        total = sum(step() for _ in range(iters))
    return 1000 * total / iters


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="resnet18,efficientnet_b0")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--side", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timm/harness pairs (default 3)")
    parser.add_argument("--budget", type=float, default=10.0, help="the harness's time budget, s (default 10)")
    parser.add_argument("--timm-iters", default="10,40", help="timm's warm-up,timed steps at batch 1 (default 10,40)")
    parser.add_argument("--timm-iters-batched", default="2,6", help="the same above batch 1 (default 2,6)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"torch threads {torch.get_num_threads()}, {args.side} px, {device}; ratio = harness / timm loop")
    print(f"{'backbone':<16} {'batch':>5} {'timm ms':>9} {'harness mean':>13} {'harness p50':>12} {'mean ratio':>11}")
    for name in args.backbones.split(","):
        model, _ = create_backbone(name, num_classes=1000)
        model.to(device)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            # timm's defaults are 10 warm-up and 40 timed steps; a 224 px batch of 32 on one CPU thread takes
            # 1-3 s a step, so there fewer, for both sides to take about the harness's budget
            warm, iters = map(int, (args.timm_iters if batch == 1 else args.timm_iters_batched).split(","))
            config = LatencyConfig(batch_sizes=(batch,), time_budget_s=args.budget, device=args.device)
            timm_ms, mean_ms, p50_ms, ratios, notes = [], [], [], [], set()
            for _ in range(args.rounds):
                timm_ms.append(timm_loop(model, batch, args.side, warm, iters, device))
                (result,) = measure_latency(model, (3, args.side, args.side), config, backbone=name)
                mean_ms.append(result.ms_per_batch_mean)
                p50_ms.append(result.ms_per_batch_p50)
                ratios.append(result.ms_per_batch_mean / timm_ms[-1])
                if result.noisy:
                    notes.add("noisy")
            row = f"{name:<16} {batch:>5} {statistics.median(timm_ms):>9.1f} {statistics.median(mean_ms):>13.1f}"
            p50_ratio = statistics.median(p / t for p, t in zip(p50_ms, timm_ms, strict=True))
            print(
                f"{row} {statistics.median(p50_ms):>12.1f} {statistics.median(ratios):>11.3f}"
                f"  (p50 ratio {p50_ratio:.3f}, rounds {min(ratios):.3f}-{max(ratios):.3f}) {' '.join(sorted(notes))}"
            )


if __name__ == "__main__":
    main()
