"""Sources: which passages an answer draws on, by attention and by ablation, and how faithful that is."""
