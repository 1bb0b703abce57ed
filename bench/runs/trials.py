"""What a record keeps of its experiment's search (:mod:`bench.runs.search`): every trial, and the chosen setting.

Apart from the search itself so that reading a record never imports Optuna.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class TrialSummary:
    """One trial as the record keeps it: its setting, how it ended, and its best validation score."""

    number: int
    params: dict[str, float | int]
    state: str  # complete, pruned (or diverged: pruned with a note), fail
    value: float | None  # the best validation score over its epochs (a pruned trial: when it was pruned)
    epochs: int  # epochs it trained
    seconds: float | None
    note: str | None = None


@dataclass
class SearchSummary:
    """A finished study, as each record of its experiment holds it."""

    study: str
    storage: str  # the URL without its password; the default SQLite file relative to the results folder
    metric: str  # the validation metric the trials were scored on (the protocol's select_on)
    chosen: dict[str, float | int]
    best_trial: int
    best_value: float
    trials: list[TrialSummary] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> SearchSummary:
        trials = [TrialSummary(**t) for t in data.get("trials", [])]
        return cls(**{**data, "trials": trials})
