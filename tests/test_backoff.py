"""Halving a batch until it fits (bench.backoff): the sizes tried, the release between tries, the last error."""

from __future__ import annotations

import pytest

from bench.backoff import halving


class Full(RuntimeError):
    """Stands in for torch.OutOfMemoryError."""


def fits_up_to(limit: int, log: list[str]):
    def attempt(batch: int) -> str:
        log.append(f"try {batch}")
        if batch > limit:
            raise Full(batch)
        return f"ran {batch}"

    return attempt


CASES = [
    ("fits at once", 8, 8, "ran 8", 8, []),
    ("halves twice", 8, 2, "ran 2", 2, [8, 4]),
    ("odd sizes", 7, 1, "ran 1", 1, [7, 3]),
]


@pytest.mark.parametrize(("case", "batch", "limit", "result", "fitted", "failed"), CASES, ids=[c[0] for c in CASES])
def test_the_batch_halves_until_it_fits_and_memory_is_released_after_each_failure(
    case, batch, limit, result, fitted, failed
):
    log: list[str] = []
    tried: list[int] = []
    out = halving(batch, fits_up_to(limit, log), (Full,), lambda: log.append("release"), tried)
    assert out == (result, fitted) and tried == failed
    assert log.count("release") == len(failed)  # once after every failure, never after the success


def test_when_nothing_fits_a_fresh_error_names_every_size_after_the_last_release():
    log: list[str] = []
    with pytest.raises(Full, match=r"out of memory at every batch size down to 1 \(tried \[4, 2, 1\]\)") as err:
        halving(4, fits_up_to(0, log), (Full,), lambda: log.append("release"))
    assert log[-1] == "release" and log.count("release") == 3
    assert err.value.__context__ is None  # not raised inside the except block: the failed frames are gone


def test_another_error_is_not_caught():
    def broken(batch: int) -> None:
        raise ValueError("not memory")

    with pytest.raises(ValueError, match="not memory"):
        halving(4, broken, (Full,))
