"""Sources: which passages an answer draws on, by attention and by ablation, and how faithful that is.

It builds on ``heads``: the calibration hands its retrieval heads to the head atlas in the atlas's own type.
"""
