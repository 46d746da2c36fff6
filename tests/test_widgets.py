"""The app's Streamlit helpers that decide without a page: when Explore's progress bar is worth drawing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from ui import widgets
from ui.widgets import PROGRESS_AFTER_S, LayerProgress, seconds_left


class Slot:
    """Stands in for the ``st.empty`` slot the bar is drawn into: keeps each label drawn."""

    def __init__(self) -> None:
        self.labels: list[str] = []

    def progress(self, fraction: float, text: str) -> None:
        assert 0.0 <= fraction <= 1.0
        self.labels.append(text)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """ui.widgets' clock, set by the test (seconds since the bar's block started)."""
    now = [0.0]
    monkeypatch.setattr(widgets, "time", SimpleNamespace(monotonic=lambda: now[0]))
    return now


def bar() -> tuple[LayerProgress, Slot]:
    """A bar whose ``with`` block started at time 0 (what ``__enter__`` sets up, without a page)."""
    progress, slot = LayerProgress("Summarising"), Slot()
    progress._slot = slot
    return progress, slot


def test_seconds_left_extrapolates_the_rate_of_the_layers_done() -> None:
    assert seconds_left(1.0, 10, 20) == pytest.approx(2.0)
    assert seconds_left(3.0, 30, 0) == 0.0
    assert seconds_left(0.4, 0, 30) is None  # no layer yet: no rate


def test_a_pass_ending_soon_after_a_second_draws_nothing(clock: list[float]) -> None:
    """A ~1 s pass (512 tokens here) would only flash a bar: nothing before 1 s, nothing with under 0.5 s left."""
    progress, slot = bar()
    for done in range(1, 31):
        clock[0] = done / 30 * 1.05
        progress(done, 30)
    assert slot.labels == []


def test_a_long_pass_draws_its_bar_after_a_second_then_at_most_every_half_second(clock: list[float]) -> None:
    progress, slot = bar()
    for done, at in ((1, 0.2), (4, 0.8), (5, PROGRESS_AFTER_S), (6, 1.2), (8, 1.6)):
        clock[0] = at
        progress(done, 30)
    assert slot.labels == ["Summarising: layer 5 of 30", "Summarising: layer 8 of 30"]


def test_a_queued_session_sees_the_bar_from_its_timer(clock: list[float]) -> None:
    """Its own pass has not started (no layer told): the timer thread draws the bar without a count."""
    progress, slot = bar()
    clock[0] = PROGRESS_AFTER_S
    progress._update()  # what the timer thread calls
    assert slot.labels == ["Summarising…"]


def test_a_pass_joined_midway_is_timed_from_when_it_was_joined(clock: list[float]) -> None:
    """Another session's long pass, at layer 28 when this session joins: 2 s a layer since then leaves 2 s
    (its rate from the block's start, 29 layers in 2.3 s, would leave 0.08 s and draw nothing)."""
    progress, slot = bar()
    clock[0] = 0.3
    progress(28, 30)
    clock[0] = 2.3
    progress(29, 30)
    assert slot.labels == ["Summarising: layer 29 of 30"]
