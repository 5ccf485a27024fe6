"""Typed errors that cross layers, so callers can degrade instead of crashing."""

from __future__ import annotations


class StreamrecError(Exception):
    """Base class for platform errors."""


class StoreUnavailable(StreamrecError):
    """An online store (Redis, Feast online) did not answer within its bounded timeout."""


class BrokerUnavailable(StreamrecError):
    """Kafka could not be reached after bounded retries."""


class ArtifactError(StreamrecError):
    """An artifact is missing, truncated, or fails its checksum; the last good one keeps serving."""


class StartupError(StreamrecError):
    """A process could not start (port busy, dependency unreachable); the message names why."""


# A process exiting with this code asks its supervisor for an immediate restart that is not a crash
# (EX_TEMPFAIL): the stream worker uses it when its input topics were re-created (a new incarnation).
EXIT_RESTART_REQUESTED = 75
