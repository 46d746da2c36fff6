"""Heads page (AppTest): nothing runs before Compute; then the role grid, a head's distributions, examples,
ablation and the JSON download."""

from __future__ import annotations

import json

import pytest

from attnviz.heads.roles import ROLES
from tests.apptest import open_page

pytestmark = pytest.mark.slow


def test_heads_page_computes_on_demand_and_draws_the_atlas(tiny_model_dir, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ATTNVIZ_CACHE", str(tmp_path))
    model = str(tiny_model_dir("llama"))
    at = open_page("heads", timeout=600, model=model)
    assert not at.exception, at.exception
    assert at.title[0].value == "Heads"
    assert any("Compute atlas" in i.value for i in at.info) and not at.get("plotly_chart")
    roles = at.dataframe[0].value  # the definitions table, shown before anything runs
    assert list(roles["role"]) == [r.name for r in ROLES] and "previous_token ≥ 0.4" in set(roles["threshold"])
    at.number_input(key="atlas_prompts").set_value(4).run()
    next(b for b in at.button if b.label == "Compute atlas").click().run()
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # role grid, distributions, the example head's map (and its bar)
    grid = json.loads(charts[0].proto.spec)
    assert {trace["name"] for trace in grid["data"]} <= {r.name for r in ROLES} | {"none", "selected"}
    download = at.get("download_button")[0]
    assert download.proto.label == "Download atlas (JSON)"
    assert any("Layer 0, head 0" in s.value for s in at.subheader)

