"""Masks: attention masks built, described by rules, and applied to the model."""
