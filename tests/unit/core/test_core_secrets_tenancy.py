"""Secrets and tenants in the settings: credentials from the environment or files land in every client's
connection settings (and never in a repr), the TLS options of PostgreSQL and Kafka, and a tenant's
namespaces."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.secrets import kafka_options, librdkafka_options, redacted
from core.settings import ConfigError, Settings, load_settings
from core.tenancy import scoped
from core.topics import Topics


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("STREAMREC_")]:
        monkeypatch.delenv(key)


def test_postgres_password_from_a_file_and_tls_go_into_the_url(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("p@ss/word\n")
    s = Settings(database={"url": "postgresql+psycopg2://app@db:5432/sr", "sslmode": "verify-full",
                           "password_file": str(tmp_path / "pw"), "sslrootcert": str(tmp_path / "ca.pem")})
    url = s.database.url or ""
    assert url.startswith("postgresql+psycopg2://app:p%40ss%2Fword@db:5432/sr?")
    assert "sslmode=verify-full" in url and "sslrootcert=" in url
    assert "p%40ss" not in repr(s) and "p@ss" not in repr(s)
    assert redacted(url).startswith("postgresql+psycopg2://app:***@db:5432/sr")


def test_tls_options_need_the_right_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="postgresql"):
        Settings(database={"url": "sqlite:///x.db", "sslmode": "require"})
    with pytest.raises(ValueError, match="rediss://"):
        Settings(redis={"url": "redis://r:6379/0", "tls_ca_file": str(tmp_path / "ca.pem")})


def test_kafka_sasl_ssl_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = tmp_path / "ca.pem"
    monkeypatch.setenv("STREAMREC_KAFKA__SASL_PASSWORD", "kafka-secret")
    s = load_settings(kafka={"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                             "sasl_username": "app", "ssl_cafile": str(ca), "ssl_check_hostname": False})
    opts = kafka_options(s.kafka)
    assert opts == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": "app", "sasl_plain_password": "kafka-secret",
                    "ssl_cafile": str(ca), "ssl_check_hostname": False}
    assert librdkafka_options(s.kafka) == {  # the impressions' librdkafka producer takes the same
        "security.protocol": "SASL_SSL", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "app",
        "sasl.password": "kafka-secret", "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "none"}
    with pytest.raises(ValueError, match="sasl_mechanism"):
        Settings(kafka={"security_protocol": "SASL_PLAINTEXT"})


def test_a_secret_in_the_settings_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "s.toml").write_text('[database]\npassword = "hunter2"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "s.toml")
    assert err.value.keys == ["database.password"] and "hunter2" not in str(err.value)
    assert "STREAMREC_DATABASE__PASSWORD" in str(err.value)


def test_a_tenant_gets_its_own_namespaces() -> None:
    base = Settings(kafka={"topic_prefix": "p."}, database={"url": "postgresql://db/sr"},
                    artifacts={"url": "s3://bucket/models"})
    acme = scoped(base, "acme")
    assert Topics(acme.kafka.topic_prefix).interactions == "p.acme.interactions"
    assert acme.redis.key_prefix == "sr:acme:" and acme.feast.project == "streamrec_acme"
    assert acme.worker.group_id.endswith("-acme") and acme.eraser.group_id.endswith("-acme")
    assert acme.data_dir == base.data_dir / "tenants" / "acme"
    assert acme.artifacts.url == "s3://bucket/models/tenants/acme"
    assert "search_path%3Dtenant_acme" in (acme.database.url or "")
    assert scoped(base, "default").kafka.topic_prefix == "p."  # the deployment's own namespace
    with pytest.raises(ValueError, match="tenant name"):
        scoped(base, "Acme-1")


def test_a_process_of_one_tenant_loads_its_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_TENANCY__TENANT", "acme")
    s = load_settings()
    assert s.tenancy.applied and s.redis.key_prefix == "sr:acme:"
