"""Tracing: our attention function hooked into the model, and the recorded attention of a prompt."""
