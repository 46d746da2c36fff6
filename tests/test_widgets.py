"""The app's Streamlit helpers that decide without a page: when a progress bar is worth drawing."""

from __future__ import annotations

import pytest

from ui.widgets import PROGRESS_AFTER_S, PROGRESS_MIN_LEFT_S, seconds_left


def test_seconds_left_extrapolates_the_rate_of_the_layers_done() -> None:
    assert seconds_left(1.0, 10, 30) == pytest.approx(2.0)
    assert seconds_left(3.0, 30, 30) == 0.0
    assert seconds_left(0.4, 0, 30) is None  # no layer yet: no rate


def test_a_512_token_pass_draws_no_bar_and_a_long_one_does() -> None:
    """A 1 s pass (512 tokens here) has under PROGRESS_MIN_LEFT_S left at PROGRESS_AFTER_S: nothing would
    flash; a 4 s pass has most of its time left and shows its bar."""
    assert seconds_left(PROGRESS_AFTER_S, 29, 30) < PROGRESS_MIN_LEFT_S
    assert seconds_left(PROGRESS_AFTER_S, 8, 30) > PROGRESS_MIN_LEFT_S
