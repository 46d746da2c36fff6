"""Models: the built-in registry (and its GGUF conversion), loading folders and hub ids, the safety rules
checked before any weight is read, download bounds, fingerprints, devices and offline mode."""
