"""The one error every model-loading step raises, so callers catch a single type."""


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says what was tried and why it failed."""
