"""Which failures of the worker's Kafka and Redis calls are worth retrying.

Retry: the broker or Redis is unreachable or slow (connection errors, timeouts, Kafka errors marked
retriable such as NOT_LEADER). Give up on the record: a refusal that will be the same next time
(MESSAGE_TOO_LARGE, INVALID_RECORD, authorization). faust wraps errors raised while queueing a send
in ``ProducerSendError``; the cause decides.
"""

from __future__ import annotations

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError, NoBrokersAvailable
from faust.exceptions import ProducerSendError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from core.errors import BrokerUnavailable, StoreUnavailable

RETRYABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError, StoreUnavailable,
    BrokerUnavailable, KafkaConnectionError, KafkaTimeoutError, NoBrokersAvailable)


def root(exc: BaseException) -> BaseException:
    """The Kafka error inside faust's ``ProducerSendError``, else ``exc``."""
    if isinstance(exc, ProducerSendError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


def is_retryable(exc: BaseException) -> bool:
    cause = root(exc)
    if isinstance(cause, RETRYABLE):
        return True
    return isinstance(cause, KafkaError) and bool(cause.retriable)


def describe(exc: BaseException) -> str:
    cause = root(exc)
    return f"{type(cause).__name__}: {cause}"
