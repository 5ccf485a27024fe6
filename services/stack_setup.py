"""What the local stack sets up before its children run: the settings each child gets through its
environment, and the broker/Redis checks and topic creation (bounded retries, then a
:class:`StartupError` naming the setting)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from core.secrets import kafka_options
from core.settings import Settings
from core.topics import FEEDS, Topics
from iokit import retry


# ---- settings -> child environment -------------------------------------------------------------
def _leaf_env(value: Any, dumped: Any) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return dumped if isinstance(dumped, str) else json.dumps(dumped)


def settings_env(settings: Settings) -> dict[str, str]:
    """Every non-None leaf as ``STREAMREC_SECTION__FIELD``: a child loading settings from this env
    (env wins over any file) gets exactly ``settings``."""
    env: dict[str, str] = {}
    dumped = settings.model_dump(mode="json")
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if isinstance(value, BaseModel):
            for sub in type(value).model_fields:
                leaf = getattr(value, sub)
                if leaf is not None:
                    env[f"STREAMREC_{name.upper()}__{sub.upper()}"] = _leaf_env(leaf, dumped[name][sub])
        elif value is not None:
            text = str(value.resolve()) if isinstance(value, Path) else dumped[name]
            env[f"STREAMREC_{name.upper()}"] = _leaf_env(value, text)
    return env


# ---- Kafka / Redis checks and topics -----------------------------------------------------------
def kafka_config(settings: Settings) -> dict[str, Any]:
    """kafka-python client options (bootstrap, security, bounded bootstrap timeout)."""
    k = settings.kafka
    cfg: dict[str, Any] = {"bootstrap_servers": k.bootstrap_servers, "client_id": k.client_id,
                           "request_timeout_ms": int(k.connect_timeout_s * 1000) + 5000,
                           "bootstrap_timeout_ms": int(k.connect_timeout_s * 1000), **kafka_options(k)}
    return cfg


def _admin(settings: Settings) -> Any:
    from kafka.admin import KafkaAdminClient

    def connect() -> Any:
        return KafkaAdminClient(**kafka_config(settings))

    return retry(f"Kafka at {settings.kafka.bootstrap_servers}", connect,
                            settings.kafka.connect_retries + 1, delay_s=0.2)


def ensure_topics(settings: Settings) -> list[str]:
    """Create every topic that is missing (feeds compacted). Returns the names created."""
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topics = Topics(settings.kafka.topic_prefix)
    admin = _admin(settings)
    try:
        missing = [t for t in topics.all() if t not in set(admin.list_topics())]
        compact = {"cleanup.policy": "compact"}
        new = [NewTopic(t, settings.kafka.partitions, settings.kafka.replication_factor,
                        topic_configs=compact if t == topics.name(FEEDS) else {}) for t in missing]
        if new:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(new)
        return missing
    finally:
        admin.close()


def check_redis(settings: Settings) -> None:
    """PING the configured Redis with bounded retries, else StartupError naming redis.url."""
    import redis

    r = settings.redis
    client = redis.Redis.from_url(str(r.url), socket_timeout=r.socket_timeout_s,
                                  socket_connect_timeout=r.connect_timeout_s)
    try:
        retry(f"Redis at {r.url} (redis.url)", client.ping, r.connect_retries + 1, delay_s=0.2)
    finally:
        client.close()
