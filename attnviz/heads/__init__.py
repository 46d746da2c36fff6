"""Heads: what each head does, as thumbnails, statistics, aggregates and ablations of a trace."""
