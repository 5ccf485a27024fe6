"""Lifecycle scheduler: train / index / drift / publish-active jobs (``python -m services.scheduler``)."""
