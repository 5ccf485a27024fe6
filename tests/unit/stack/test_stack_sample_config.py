"""The shipped sample config loads, documents every section, and states the real defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from core.settings import ConfigError, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "streamrec.example.toml"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in [k for k in os.environ if k.startswith("STREAMREC_")]:
        monkeypatch.delenv(key)


def test_sample_config_loads_and_matches_defaults():
    loaded = load_settings(EXAMPLE)
    assert loaded.model_dump() == Settings().model_dump()


def test_sample_config_has_every_section():
    data = tomllib.loads(EXAMPLE.read_text())
    sections = {n for n, f in Settings.model_fields.items()
                if isinstance(f.annotation, type) and issubclass(f.annotation, BaseModel)}
    assert sections - set(data) == set()


def test_sample_config_edit_takes_effect(tmp_path: Path):
    text = EXAMPLE.read_text().replace("partitions = 4", "partitions = 8")
    (tmp_path / "s.toml").write_text(text)
    assert load_settings(tmp_path / "s.toml").kafka.partitions == 8


def test_malformed_config_fails_naming_the_key(tmp_path: Path):
    text = EXAMPLE.read_text().replace("partitions = 4", 'partitions = "many"')
    (tmp_path / "bad.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(tmp_path / "bad.toml")
    assert err.value.keys == ["kafka.partitions"]
    assert "kafka.partitions" in str(err.value)


def test_sample_config_documents_every_setting():
    """Each setting appears in the sample, set to its default or commented out (optional endpoints)."""
    data = tomllib.loads(EXAMPLE.read_text())
    text = EXAMPLE.read_text()
    defaults = Settings()
    missing = []
    for name, value in ((n, getattr(defaults, n)) for n in Settings.model_fields):
        if isinstance(value, BaseModel):
            missing += [f"{name}.{sub}" for sub in type(value).model_fields
                        if sub not in data.get(name, {}) and f"# {sub} =" not in text]
        elif name not in data:
            missing.append(name)
    assert not missing, f"add these settings to streamrec.example.toml: {missing}"
