"""Learn: the attention maths step by step, its variants, and the check against the model.

It builds on ``masks``: the walkthrough's mask step draws and applies the same mask builders.
"""
