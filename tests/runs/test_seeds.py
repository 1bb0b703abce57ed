"""The five source projects' sweeps (``sweeps/seeds/``): each plans, and one trains against a local hub cache.

The hub cache is built here in huggingface_hub's documented layout (``models--timm--<name>/refs/main``,
``snapshots/<rev>/model.safetensors`` and ``config.json``), holding random tensors of the model's shapes, and
read with ``HF_HUB_OFFLINE=1``: the ImageNet-weights path of a real run, with no network.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

from bench.models.weights import load_pretrained
from bench.runs.record import load_records

REPO = Path(__file__).resolve().parents[2]
SEEDS = sorted(p.stem for p in (REPO / "sweeps" / "seeds").glob("*.toml"))
COMMIT = "0123456789abcdef0123456789abcdef01234567"
PLANNED = [f"seeds/{name}" for name in SEEDS] + ["mission"]  # mission.toml: the 224 px comparison for a GPU


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from bench.cli.commands import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )


def plant_hub_weights(cache: Path, timm_name: str) -> tuple[Path, dict[str, torch.Tensor]]:
    """``timm_name``'s hub repo in a Hugging Face cache at ``cache``, with random tensors of the right shapes."""
    cfg = timm.models.get_pretrained_cfg(timm_name)
    repo = cache / f"models--{cfg.hf_hub_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    torch.manual_seed(7)
    tensors = {k: v.clone().contiguous() for k, v in timm.create_model(timm_name).state_dict().items()}
    save_file(tensors, snapshot / "model.safetensors")
    config = {"architecture": cfg.architecture, "num_classes": 1000, "pretrained_cfg": cfg.to_dict()}
    (snapshot / "config.json").write_text(json.dumps(config))
    return snapshot / "model.safetensors", tensors


@pytest.fixture
def mission_data(project: Path) -> Path:
    """The tiny dataset standing in for ham10000, isic and chest_xray (the seeds sweeps' datasets)."""
    tiny = (project / "datasets" / "tiny.toml").read_text()
    for name in ("ham10000", "isic", "chest_xray"):
        (project / "datasets" / f"{name}.toml").write_text(tiny.replace('name = "tiny"', f'name = "{name}"'))
    return project


def test_there_is_a_sweep_per_project():
    assert [s[:2] for s in SEEDS] == ["s0", "s1", "s2", "s3", "s4"]


@pytest.mark.parametrize("sweep", PLANNED)
def test_every_seeds_sweep_and_the_mission_plan_with_dry_run(sweep, mission_data, tmp_path):
    proc = bench("run", "--sweep", sweep, "--dry-run", "--results-dir", "results", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = proc.stdout.split(" runs: ")[0].split()[-1]
    assert f"{runs} runs: 0 done, {runs} to do" in proc.stdout and "nothing was trained" in proc.stdout
    assert "no estimate" in proc.stdout and "--estimate-from FOLDER" in proc.stdout  # nothing earlier times it
    assert not (tmp_path / "results" / "runs").exists()


def test_an_unknown_seeds_sweep_is_one_line(project):
    proc = bench("run", "--sweep", "seeds/s9-nothing", "--dry-run")
    assert proc.returncode == 2 and "s9-nothing" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_reproduction_with_no_runs_says_so(mission_data):
    proc = bench("reproduction", "--sweep", "seeds/s0-effnetv2s-ham10000")
    assert proc.returncode == 2 and "no run records under my-results/runs: run `bench run` first" in proc.stderr


def test_hub_cache_weights_load_offline_exactly(tmp_path, monkeypatch):
    path, planted = plant_hub_weights(tmp_path / "hf", "efficientnet_b0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    model = timm.create_model("efficientnet_b0")
    provenance = load_pretrained(model, "efficientnet_b0")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in planted.items())
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert provenance == {
        "source": "timm-hub",
        "location": str(path),
        "sha256": sha,
        "tag": "timm/efficientnet_b0.ra_in1k",
    }


def test_a_seeds_sweep_trains_one_epoch_on_hub_cache_weights(mission_data, tmp_path):
    """S2 scaled down (32 px, one seed, one epoch) on the tiny stand-in for ISIC, ImageNet weights from the cache."""
    sweep = mission_data / "sweeps" / "seeds" / "s2-effnetb0-isic.toml"
    text = sweep.read_text().replace("resolution = 224", "resolution = 32").replace("[0, 1, 2]", "[0]")
    sweep.write_text(text)
    path, _ = plant_hub_weights(tmp_path / "hf", "efficientnet_b0")
    offline = {"HF_HUB_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    run = ("run", "--sweep", "seeds/s2-effnetb0-isic", "--epochs", "1", "--results-dir", "results", "--device", "cpu")
    proc = bench(*run, env=offline)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (record,) = load_records(tmp_path / "results")
    assert record.status == "ok" and record.effective_resolution == 32 and len(record.history) == 1
    assert record.backbone.weights == {
        "source": "timm-hub",
        "location": str(path),
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "tag": "timm/efficientnet_b0.ra_in1k",
    }
    assert record.protocol.phases[0].layer_decay == 0.8
    proc = bench("reproduction", "--sweep", "seeds/s2-effnetb0-isic", "--results-dir", "results")
    assert proc.returncode == 2 and "lists no [[published]] results" in proc.stderr


def test_without_weights_a_run_stops_saying_how_to_supply_them(mission_data, tmp_path):
    offline = {"HF_HUB_CACHE": str(tmp_path / "empty"), "HF_HUB_OFFLINE": "1"}
    run = ("run", "--backbones", "efficientnet_b0", "--datasets", "isic", "--protocol", "s2-discriminative")
    proc = bench(
        *run, "--epochs", "1", "--resolution", "32", "--results-dir", "results", "--device", "cpu", env=offline
    )
    (record,) = load_records(tmp_path / "results")
    assert record.status == "failed" and "\n" not in record.error
    assert "not in the Hugging Face cache and HF_HUB_OFFLINE is set; pass --weights PATH" in record.error
    assert "--weights PATH" in proc.stdout + proc.stderr
