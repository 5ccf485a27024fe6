"""Build Feast's RepoConfig and FeatureStore from ``core.settings`` (no feature_store.yaml).

Registry: SQL through SQLAlchemy (``settings.feast_registry_url``: SQLite locally, PostgreSQL in
production), so several processes share one registry. Online store: Redis at ``settings.redis.url``,
keys namespaced by ``settings.feast.project``. Offline store: file (parquet written by
``feature_store.offline`` from the archive; never written by pushes).
"""

from __future__ import annotations

from pathlib import Path

from feast import FeatureStore, RepoConfig
from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.registry.sql import SqlRegistryConfig

from core.settings import Settings
from feature_store.redis_url import parse

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def offline_dir(settings: Settings) -> Path:
    """Where the batch-source parquet files (one per feature view) live."""
    return (settings.data_dir / "offline").resolve()


def redis_connection_string(url: str, socket_timeout_s: float, connect_timeout_s: float) -> str:
    """``redis.url`` -> Feast's connection string: ``host:port,db=N,password=...`` for one server,
    ``host1:port1,host2:port2,password=...`` for a Redis Cluster (``redis+cluster://``)."""
    ep = parse(url)
    parts = [f"{host}:{port}" for host, port in ep.nodes]
    if not ep.cluster:
        parts.append(f"db={ep.db}")
    if ep.username:
        parts.append(f"username={ep.username}")
    if ep.password:
        parts.append(f"password={ep.password}")
    if ep.tls:
        parts.append("ssl=true")
        parts += [f"{k}={v}" for k, v in ep.tls_files]
    parts += [f"socket_timeout={socket_timeout_s}", f"socket_connect_timeout={connect_timeout_s}"]
    return ",".join(parts)


def repo_config(settings: Settings) -> RepoConfig:
    url = settings.redis.url or DEFAULT_REDIS_URL
    conn = redis_connection_string(url, settings.redis.socket_timeout_s, settings.redis.connect_timeout_s)
    registry_url = settings.feast_registry_url
    if registry_url.startswith("sqlite:"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    return RepoConfig(
        project=settings.feast.project,
        provider="local",
        registry=SqlRegistryConfig(registry_type="sql", path=registry_url, cache_ttl_seconds=60,
                                   sqlalchemy_config_kwargs={"echo": False, "pool_pre_ping": True}),
        online_store=RedisOnlineStoreConfig(
            connection_string=conn, redis_type="redis_cluster" if parse(url).cluster else "redis"),
        offline_store=DaskOfflineStoreConfig(),
        repo_path=offline_dir(settings),
        entity_key_serialization_version=3,
    )


def feature_store(settings: Settings) -> FeatureStore:
    """A FeatureStore bound to the settings (registry, online Redis, offline parquet)."""
    offline_dir(settings).mkdir(parents=True, exist_ok=True)
    return FeatureStore(config=repo_config(settings))
