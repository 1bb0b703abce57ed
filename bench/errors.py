"""User-facing errors.

Every mistake a user can make (a wrong name, a broken file, a missing image) raises a subclass of
:class:`BenchError` whose message is one line naming the culprit. The CLI prints that line and exits
non-zero; anything that is *not* a ``BenchError`` is a bug in the harness and keeps its traceback.
"""

from __future__ import annotations


class BenchError(Exception):
    """A problem the user can fix; ``str(err)`` is the one-line message shown to them."""


class ConfigError(BenchError):
    """A backbone, dataset, protocol or sweep file (or a CLI value) is malformed or unknown."""


class DataError(BenchError):
    """A dataset on disk is not as its entry says (missing file, undecodable image, bad label...)."""


class WeightsError(BenchError):
    """Pretrained weights were asked for and cannot be had."""


class ResultsError(BenchError):
    """A record or checkpoint cannot be written or read."""
