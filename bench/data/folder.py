"""A folder is a dataset: ``--datasets ./my_photos`` infers the entry a ``datasets/*.toml`` file would hold.

The folder is ``<path>/train|test/<class>/*`` (optionally ``val/``) or ``<path>/<class>/*``, the two
``class_folders`` layouts of :func:`bench.data._layouts.read_class_folders`, which then reads it like any
entry's folder. What is inferred is stated, never guessed silently:

* classes: the class folder names, sorted (label = index); 2 classes is a binary task whose positive class
  is the second name (as for any entry), 3 or more multiclass;
* split: ``train/`` + ``test/`` + ``val/`` is taken as given (``official``); ``train/`` + ``test/`` keeps
  them and carves a stratified 10 % of train into val (``carve_val``); one folder of classes is split
  stratified 70/10/20 (``stratified``); the split seed is 0 and is no training seed, so every backbone and
  seed of a comparison sees the same test images;
* colour: grayscale when every image is single-channel (X-rays), otherwise rgb;
* name: the folder's own name made an identifier (``my photos`` -> ``my_photos``): the same folder always
  gives the same name, which names its folder under ``results/runs/``.

A run of a folder dataset carries the name as its dataset and the folder as its ``data_root``
(:class:`bench.runs.spec.RunSpec`), so any process, a worker included, infers the same entry from the spec
alone (:func:`dataset_entry`). The entry enters the experiment identity like a registered one (content,
split fingerprint, pixels), so the run key changes whenever the folder's images do. :func:`entry_toml` is
the file that would register it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from pathlib import Path

import tomli_w
from PIL import Image

from bench.config import from_mapping, is_folder_ref, is_identifier
from bench.data._layouts import IMAGE_SUFFIXES, SPLITS, decoding
from bench.data.entries import DatasetEntry, get_dataset_entry, registered_names
from bench.errors import ConfigError, DataError
from bench.paths import registry_folders

GRAYSCALE_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
CARVED_VAL = 0.1  # as the registered train/test entries (isic, chest_xray) carve theirs
STRATIFIED = {"train": 0.7, "val": 0.1, "test": 0.2}


def resolve_dataset(value: str) -> tuple[str, str | None]:
    """A ``--datasets`` value as (dataset name, data root): a name as is, a folder as its inferred name and path.

    The folder is checked whole here (a bad folder fails before anything trains). A folder whose name is a
    registered dataset is that dataset when it is the entry's own folder (``data/isic`` is ``isic``), and
    refused otherwise: two different datasets must not share a name, and so a results folder.
    """
    if not is_folder_ref(value):
        return value, None
    folder = Path(value).expanduser().absolute().resolve()
    name = folder_name(folder)
    if name in registered_names():
        registered = get_dataset_entry(name)
        if registered.path.resolve() == folder:
            return name, None
        raise ConfigError(
            f"--datasets {value}: the folder's name '{name}' is the registered dataset {registered.source_file} "
            f"(at {registered.path}); rename the folder, or pass `--datasets {name} --data-root {value}` if it "
            "is a copy of that dataset"
        )
    infer_entry(folder)
    return name, str(folder)


def dataset_entry(name: str, data_root: str | Path | None = None) -> DatasetEntry:
    """The entry a run of ``name`` reads: the registered one, else the one inferred from its ``data_root`` folder."""
    inferred = folder_entry(name, data_root)
    return inferred if inferred is not None else get_dataset_entry(name)


def folder_entry(name: str, data_root: str | Path | None) -> DatasetEntry | None:
    """The entry inferred from ``data_root`` when ``name`` is no registered dataset and is that folder's name."""
    if data_root is None or name in registered_names():
        return None
    folder = Path(data_root).expanduser().absolute()
    if not folder.is_dir() or folder_name(folder) != name:
        return None
    return infer_entry(folder)


def inferred_entries(runs: Iterable[tuple[str, str | None]]) -> list[DatasetEntry]:
    """The inferred entries among (dataset, data root) pairs, once each: what ``bench run`` prints as TOML."""
    found = (folder_entry(name, root) for name, root in dict.fromkeys(runs))
    return [entry for entry in found if entry is not None]


def folder_name(folder: Path) -> str:
    """The dataset name of a folder: its name with every run of other characters than a name's as one ``_``."""
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.name).strip("_.-")
    if not is_identifier(name):
        raise ConfigError(f"{folder}: cannot make a dataset name of the folder's name '{folder.name}'")
    return name


def infer_entry(folder: Path) -> DatasetEntry:
    """The entry of a folder of class folders (layouts: the module docstring); a bad folder is a DataError."""
    folder = folder.expanduser().absolute()
    return _infer(folder, _mtimes(folder))


def _mtimes(folder: Path) -> tuple[int, ...]:
    """The mtimes of the folder and of the folders two levels down: a file added or removed changes one."""
    if not folder.is_dir():
        return ()
    below = [[child, *_visible_dirs(child)] for child in _visible_dirs(folder)]
    return tuple(d.stat().st_mtime_ns for d in [folder, *(d for level in below for d in level)])


@functools.cache
def _infer(folder: Path, mtimes: tuple[int, ...]) -> DatasetEntry:
    """Memoised per folder and folder mtimes: planning and running a sweep ask for each run's entry, and
    reading every image header once is enough (an image rewritten in place is seen by a new process)."""
    del mtimes
    return from_mapping(DatasetEntry, entry_mapping(folder), f"{folder} (inferred)", source_file=_saved_as(folder))


def entry_mapping(folder: Path) -> dict:
    """The TOML table of the entry a folder holds, after checking every class folder and image in it."""
    if folder.is_file():
        raise DataError(f"{folder}: a file, not a folder of class folders (an npz or a CSV needs a datasets/ entry)")
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder (a folder dataset is <folder>/<class>/ or <folder>/train|test/)")
    subdirs = _visible_dirs(folder)
    names = [d.name for d in subdirs]
    splits = [n for n in names if n in SPLITS]
    if not subdirs:
        raise DataError(f"{folder}: no class subfolders (expected {folder}/<class>/ or {folder}/train|test/<class>/)")
    if splits and len(splits) < len(names):
        others = ", ".join(n for n in names if n not in SPLITS)
        raise DataError(f"{folder}: mixes split folders ({', '.join(splits)}) with other folders ({others})")
    if splits:
        missing = [s for s in ("train", "test") if s not in splits]
        if missing:
            have = ", ".join(f"{s}/" for s in splits)
            raise DataError(f"{folder}: has {have} but no {missing[0]}/ (a split layout needs train/ and test/)")
        found = {s: _class_images(folder / s) for s in splits}
        classes = sorted(set().union(*found.values()))
        for name, per_class in found.items():
            missing_class = next((c for c in classes if c not in per_class), None)
            if missing_class is not None:
                raise DataError(f"{folder / name}: no folder for class '{missing_class}'")
        split = {"policy": "official"} if "val" in splits else {"policy": "carve_val", "val": CARVED_VAL, "seed": 0}
        need = {"train": 1 if "val" in splits else 2, "val": 1, "test": 1}  # carving val takes one train image
        for name, per_class in found.items():
            _require_images(folder / name, per_class, need[name])
        images = [file for per_class in found.values() for files in per_class.values() for file in files]
    else:
        per_class = _class_images(folder)
        classes = sorted(per_class)
        split = {"policy": "stratified", **STRATIFIED, "seed": 0}
        _require_images(folder, per_class, 3)  # one image each for train, val and test at least
        images = [file for files in per_class.values() for file in files]
    if len(classes) < 2:
        raise DataError(f"{folder}: one class folder only ('{classes[0]}'); a classifier needs at least 2 classes")
    return {
        "name": folder_name(folder),
        "title": f"Inferred from the folder {folder.name} ({len(images)} images)",
        "layout": "class_folders",
        "path": _as_written(folder),
        "classes": classes,
        "task": "binary" if len(classes) == 2 else "multiclass",
        **({"positive": classes[1]} if len(classes) == 2 else {}),  # the default, written out: it is a choice
        "color": "grayscale" if {_mode(file) for file in images} <= GRAYSCALE_MODES else "rgb",  # every header read
        "licence": "unknown: inferred from a folder (state the data's licence here)",
        "citation": "unknown: inferred from a folder (state where the data comes from here)",
        "split": split,
    }


def entry_toml(entry: DatasetEntry) -> str:
    """The ``datasets/<name>.toml`` file that registers an inferred entry (it reads back as the same entry)."""
    return tomli_w.dumps(entry_mapping(entry.path))


def _saved_as(folder: Path) -> Path:
    """Where the inferred entry would be saved to register it (an entry's name is its file's stem): the user's
    ``BENCH_HOME/datasets`` when set, else the project's ``datasets/``."""
    return registry_folders("datasets")[-1] / f"{folder_name(folder)}.toml"


def _as_written(folder: Path) -> str:
    """The path as an entry writes it: relative to the folder above its ``datasets/`` when inside it (the rule of
    :func:`bench.data.entries.parse_entry`, so a clone elsewhere still reads it)."""
    try:
        return folder.relative_to(_saved_as(folder).resolve().parent.parent).as_posix()
    except ValueError:
        return str(folder)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _class_images(parent: Path) -> dict[str, list[Path]]:
    """The image files of each class folder under ``parent``; a file that is not an image is refused, naming it."""
    found = {}
    for cls in _visible_dirs(parent):
        files = sorted(p for p in cls.iterdir() if p.is_file() and not p.name.startswith("."))
        for file in files:
            if file.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(f"{file}: not an image (a class folder holds {', '.join(sorted(IMAGE_SUFFIXES))})")
        found[cls.name] = files
    if not found:
        raise DataError(f"{parent}: no class subfolders")
    return found


def _require_images(parent: Path, per_class: dict[str, list[Path]], least: int) -> None:
    for cls, files in per_class.items():
        if len(files) < least:
            count = f"{len(files)} image{'' if len(files) == 1 else 's'}"
            raise DataError(f"{parent / cls}: {count}; a class needs at least {least} here (one per split it feeds)")


def _mode(file: Path) -> str:
    """The image's PIL mode, from its header only; a file that does not decode is refused, naming it."""
    with decoding(file), Image.open(file) as img:
        return img.mode
