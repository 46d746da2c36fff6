"""Atlas figures: a head's distributions, alone and with a prompt's values marked."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from attnviz.heads.compare import compare_head
from attnviz.heads.corpus import CorpusPrompt
from attnviz.views.atlas_figures import head_distributions
from tests.heads.test_compare import planted_atlas, prompt_stats


def test_distributions_mark_the_prompt_on_the_compared_statistics_only() -> None:
    atlas = planted_atlas()
    whole = head_distributions(atlas, 1, 2)
    assert [a.text for a in whole.layout.annotations] == list(atlas.statistics) and not whole.layout.shapes
    marks = compare_head(atlas, prompt_stats(1.5), 1, 2)
    marked = head_distributions(atlas, 1, 2, marks)
    titles = [a.text for a in marked.layout.annotations if a.text in atlas.statistics]
    assert titles == [m.statistic for m in marks]
    assert [shape.y0 for shape in marked.layout.shapes] == [m.value for m in marks]
    notes = [a.text for a in marked.layout.annotations if a.text.startswith("this prompt")]
    assert notes == [f"this prompt {m.value:.3f} · percentile 50" for m in marks]
    boxes = [trace for trace in marked.data if trace.type == "box"]
    np.testing.assert_allclose(boxes[1].y, marks[1].corpus)  # distance: the head's four passages


def test_prompt_labels_reach_plotly_escaped() -> None:
    atlas = planted_atlas()
    hostile = CorpusPrompt("natural", (1, 2), "<img src=x onerror=alert(1)>")
    atlas = replace(atlas, prompts=(hostile, *atlas.prompts[1:]))
    spec = json.dumps(head_distributions(atlas, 0, 0, compare_head(atlas, prompt_stats(0.0), 0, 0)).to_dict())
    assert "<img" not in spec and "&lt;img" in spec
