"""Learn: the attention maths step by step, its variants, and the check against the model."""
