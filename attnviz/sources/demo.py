"""Demo cases shipped with attnviz: questions over short passages, the answer in one known passage.

Written for this project (not copied from any data set) so the app works from a fresh clone.
The first is the Sources page's default; SmolLM2-135M-Instruct answers it correctly.
"""

from __future__ import annotations

from attnviz.sources.calibration import Case

DEMO_CASES: tuple[Case, ...] = (
    Case(
        "What does the bakery on Elm Lane sell on Sundays?",
        (
            "Whales communicate using a wide range of sounds.",
            "On Sundays the bakery on Elm Lane sells only cinnamon rolls.",
            "The highway was closed for repairs during the whole of March.",
            "Chess clocks were first used in tournaments in the 1880s.",
        ),
        1,
        "cinnamon",
    ),
    Case(
        "Which colour is the ferry that crosses to Larkholm?",
        (
            "The ferry that crosses to Larkholm is painted bright yellow.",
            "Beekeepers wear veils to protect their faces from stings.",
            "The museum's new wing will open next spring.",
        ),
        0,
        "yellow",
    ),
    Case(
        "How many moons does the planet Veyra have in the novel?",
        (
            "The novel's hero grew up on a farm near the coast.",
            "Copper pipes can last for more than fifty years.",
            "In the novel, the planet Veyra has exactly seven moons.",
            "The school choir sang at the town's summer fair.",
        ),
        2,
        "seven",
    ),
)
