from pathlib import Path

import pytest

from core.settings import ConfigError, load_settings
from core.topics import Topics


def test_defaults_are_local_and_valid():
    s = load_settings()
    assert s.mode == "local"
    assert s.kafka.bootstrap_servers is None
    assert s.database_url.startswith("sqlite:///")


def test_env_overrides_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[worker]\nbatch_size = 3\n[api]\nport = 9000\n")
    monkeypatch.setenv("STREAMREC_WORKER__BATCH_SIZE", "7")
    s = load_settings(cfg)
    assert s.worker.batch_size == 7
    assert s.api.port == 9000


def test_bad_value_names_the_key(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STREAMREC_KAFKA__PARTITIONS", "many")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert err.value.keys == ["kafka.partitions"]
    assert "kafka.partitions" in str(err.value)


def test_unknown_key_in_file_is_refused(tmp_path: Path):
    cfg = tmp_path / "s.toml"
    cfg.write_text("[kafka]\npartitionz = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert err.value.keys == ["kafka.partitionz"]


def test_invalid_toml_and_missing_file_are_clear(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[kafka\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "missing.toml")


def test_production_requires_endpoints():
    with pytest.raises(ConfigError) as err:
        load_settings(mode="production")
    assert "kafka.bootstrap_servers" in str(err.value)


def test_topics_are_prefixed():
    t = Topics("acme-")
    assert t.feeds == "acme-feeds"
    assert t.dlq("interactions") == "acme-interactions.dlq"
    assert "acme-items.dlq" in t.all()
