"""Models: the built-in registry, loading folders and hub ids safely, devices and offline mode."""
