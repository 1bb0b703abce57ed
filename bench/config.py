"""Reading the declarative TOML files (backbones, datasets, protocols, sweeps) into typed dataclasses.

Registry entries are data, never code: nothing in a file is imported or executed. A malformed file
fails with one line naming the file, the line (for syntax errors) and the field at fault, nested fields
by their dotted path (``split.seed``, ``group[1].epochs``), so every registry reads its files the same way.

The rules shared by several readers live here too, so a value reads the same from a file as from the
command line: names that become paths (:func:`check_identifier`), seeds, epoch counts and resolutions.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import tomllib
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from bench.errors import ConfigError

T = TypeVar("T")
_ONLY_FOR = "bench.config.only_for"  # the field metadata key of only_for()
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
SEED_MAX = 2**32 - 1  # numpy's and torch's seeds are unsigned 32-bit
_NAME_RULE = "(letters, digits, '_', '.' and '-', starting with a letter or digit, at most 100, no '/' or '..')"
MIN_RESOLUTION = 8  # below this no registered backbone runs, and a record name would read "r0"
DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")
MAX_RESOLUTION = 1024  # 4x the 224-299 px these backbones were made for; 100000 px would be a 30 GB image
ResolutionPolicy = Literal["upsize", "refuse"]
"""What a resolution below a backbone's minimum does (:func:`bench.models.registry.resolve_resolution`): here, so
specs and sweeps name it without importing the registry (and torch)."""


class FieldError(ConfigError):
    """A dataclass's ``__post_init__`` rejecting one of its fields.

    The dataclass knows its rules but not which file it came from or where it sits in it; from_mapping adds
    both, so each rule is written once, beside its field, and still reads ``<file>: field 'split.seed' ...``.
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"field {field!r} {problem}")
        self.field = field
        self.problem = problem


def check_identifier(value: Any, what: str, where: str = "") -> str:
    """``value`` when it is a name that can be one path component, else a ConfigError naming ``where``.

    Backbone, dataset, protocol and sweep names become folder and file names under ``--results-dir``, so a
    name such as ``../../elsewhere`` or ``/abs/dir`` would write outside it: letters, digits, ``_``, ``.``
    and ``-`` only, starting with a letter or digit, never ``..``.
    """
    if not is_identifier(value):
        raise ConfigError(f"{where + ': ' if where else ''}{what} {value!r} is not a name {_NAME_RULE}")
    return value


def check_names(values: Sequence[str], field: str) -> None:
    """:func:`check_identifier` for a list field of a dataclass read by :func:`from_mapping` (a FieldError)."""
    for value in values:
        if not is_identifier(value):
            raise FieldError(field, f"holds {value!r}, which is not a name {_NAME_RULE}")


def is_folder_ref(value: str) -> bool:
    """Whether a dataset value names a folder (:mod:`bench.data.folder`) rather than a registered entry.

    It reads as a path: ``./isic``, ``data/isic``, ``~/x``, ``.``. A bare word is always a registry name, so a
    folder that happens to sit in the current directory never shadows an entry.
    """
    return "/" in value or value in {".", ".."} or value.startswith("~")


def is_identifier(value: Any) -> bool:
    return isinstance(value, str) and IDENTIFIER.fullmatch(value) is not None and ".." not in value


def check_seeds(seeds: Sequence[int], field: str = "seeds") -> None:
    """At least one seed, each one numpy and torch accept (a :class:`FieldError` on ``field`` if not)."""
    if not seeds:
        raise FieldError(field, "is empty: give at least one seed")
    for seed in seeds:
        if not 0 <= seed <= SEED_MAX:
            raise FieldError(field, f"holds {seed}: a seed must be in 0..{SEED_MAX}")


def check_epochs(epochs: int | Sequence[int] | None, field: str = "epochs") -> None:
    """None (the protocol's own), or one count per run or per phase, each at least 1."""
    if epochs is None:
        return
    counts = [epochs] if isinstance(epochs, int) else list(epochs)
    if not counts:
        raise FieldError(field, "is empty: give one epoch count, or one per phase")
    for count in counts:
        if count < 1:
            raise FieldError(field, f"holds {count}: a phase trains at least 1 epoch")


def check_train_fractions(fractions: Sequence[float], field: str = "train_fractions") -> None:
    """At least one fraction of the training split, each in (0, 1] (:mod:`bench.data.fractions`)."""
    if not fractions:
        raise FieldError(field, "is empty: give at least one fraction, 1 for the whole training split")
    for fraction in fractions:
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction <= 1:
            raise FieldError(field, f"holds {fraction!r}: a training fraction must be in (0, 1], e.g. 0.1 or 1")


def check_resolution(resolution: int, field: str = "resolution") -> None:
    """An input side in [MIN_RESOLUTION, MAX_RESOLUTION] pixels (a backbone's own minimum applies on top)."""
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise FieldError(field, f"is {resolution}: an input side must be {MIN_RESOLUTION} to {MAX_RESOLUTION} pixels")


SPLIT_FRACTIONS = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{1,2})")


def split_fractions(text: str, field: str = "split") -> tuple[float, float, float]:
    """Train/val/test fractions from percentages ``"70/20/10"`` (each 1-98, summing to 100), else a FieldError."""
    match = SPLIT_FRACTIONS.fullmatch(text)
    parts = [int(g) for g in match.groups()] if match else []
    if not parts or sum(parts) != 100 or min(parts) < 1:
        hint = "give 'dataset' or train/val/test percentages summing to 100, e.g. '70/20/10'"
        raise FieldError(field, f"is {text!r}; {hint}")
    train, val, test = parts
    return train / 100, val / 100, test / 100


def check_device_name(name: str, what: str = "--device") -> str:
    """``name`` if it can name a device (auto, cpu, cuda, cuda:N); checked before torch is imported."""
    if not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"{what} takes auto, cpu, cuda or cuda:N, got {name!r}")
    return name


def only_for(field: str, *values: Any, default: Any = dataclasses.MISSING) -> Any:
    """A dataclass field that applies only while the earlier field ``field`` has one of ``values``.

    Where it applies, a file that leaves it out gets ``default``, or, with no default, is told it is missing;
    elsewhere a file may not set it (it is None), because a setting that silently does nothing is a bug
    waiting to happen: split fractions under a published split, one layout's table under another layout.
    """
    return dataclasses.field(default=None, metadata={_ONLY_FOR: (field, values, default)})


def load_toml(path: Path) -> dict[str, Any]:
    """Parse ``path``; a syntax error names the file and tomllib's line/column."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: invalid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: cannot read: not UTF-8 ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None


def from_mapping(cls: type[T], data: dict[str, Any], source: str, /, **given: Any) -> T:
    """Build dataclass ``cls`` from ``data``, naming ``source`` and the field on any mismatch.

    Checks unknown keys (suggesting the closest known one), missing required fields, the basic type of each
    value (str, int, float, bool, Path, Literal choices, lists/tuples, tables, nested dataclasses) and
    :func:`only_for` conditions; a :class:`FieldError` from ``__post_init__`` gets the file and dotted path.
    ``given`` are fields the caller supplies (such as the file an entry was read from): a file cannot set them.
    """
    return _build(cls, data, source, "", given)


def _build(cls: type[T], data: dict[str, Any], source: str, prefix: str, given: dict[str, Any]) -> T:
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and f.name not in given}
    _reject_unknown(data, fields, source, prefix)
    hints = typing.get_type_hints(cls)
    kwargs = dict(given)
    for name, field in fields.items():
        path = f"{prefix}{name}"
        if not _applies(field, kwargs, source, path, set_in_file=name in data):
            continue
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], source, path)
        elif (default := _default(field)) is not dataclasses.MISSING:
            kwargs[name] = default
        else:
            raise ConfigError(f"{source}: field {path!r} is missing{_needs(field, hints[name], kwargs)}")
    try:
        return cls(**kwargs)
    except FieldError as err:
        raise ConfigError(f"{source}: field '{prefix}{err.field}' {err.problem}") from None


def _reject_unknown(data: dict[str, Any], fields: dict[str, dataclasses.Field], source: str, prefix: str) -> None:
    unknown = [key for key in data if key not in fields]
    if not unknown:
        return
    close = difflib.get_close_matches(unknown[0], list(fields), n=1)
    hint = f"did you mean '{prefix}{close[0]}'?" if close else f"known: {', '.join(sorted(fields))}"
    raise ConfigError(f"{source}: unknown field '{prefix}{unknown[0]}' ({hint})")


def _applies(field: dataclasses.Field, kwargs: dict[str, Any], source: str, path: str, set_in_file: bool) -> bool:
    """Whether ``field`` applies given the fields read so far; an :func:`only_for` field set where not is an error."""
    if _ONLY_FOR not in field.metadata:
        return True
    on, values, _ = field.metadata[_ONLY_FOR]
    current = kwargs.get(on)  # read already (declared earlier), defaults included
    if current in values:
        return True
    if set_in_file:
        choices = " or ".join(map(repr, values))
        raise ConfigError(f"{source}: field {path!r} is only for {on} {choices}, not {current!r}")
    return False


def _default(field: dataclasses.Field) -> Any:
    """What a file that leaves out an applicable ``field`` gets (MISSING: the file must set it)."""
    if _ONLY_FOR in field.metadata:
        return field.metadata[_ONLY_FOR][2]
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _needs(field: dataclasses.Field, hint: Any, kwargs: dict[str, Any]) -> str:
    """What a missing field should hold (a nested table's required fields), and which choice needs it."""
    tables = [a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)]
    fields = dataclasses.fields(tables[0]) if tables else ()
    required = [repr(f.name) for f in fields if f.init and _default(f) is dataclasses.MISSING]
    what = f"a table with at least {', '.join(required)}" if required else "it"
    if _ONLY_FOR in field.metadata:
        on = field.metadata[_ONLY_FOR][0]
        return f" ({on} {kwargs[on]!r} needs {what})"
    return f" ({what})" if required else ""


def _coerce(hint: Any, value: Any, source: str, path: str) -> Any:
    where = f"{source}: field {path!r}"
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, source, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} is {value!r}; expected one of {', '.join(map(repr, args))}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        item = args[0] if args else Any
        items = [_coerce(item, v, source, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table, got {value!r}")
        return _build(hint, value, source, f"{path}.", {})
    if hint is Any:
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a path string, got {value!r}")
        return Path(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(hint, type) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"{where} must be {getattr(hint, '__name__', hint)}, got {value!r}")
    return value
