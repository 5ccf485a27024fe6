"""The settings that the manifests set are exactly ones the code reads, and they load and validate."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest
from deploy_helpers import DEPLOY, OVERLAYS, find
from pydantic import BaseModel, SecretStr

from core.settings import Settings, load_settings

PREFIX = "STREAMREC_"
# Values that carry credentials: only ever in the Secret.
SECRET_KEYS = {"STREAMREC_REDIS__URL", "STREAMREC_DATABASE__URL", "STREAMREC_FEAST__REGISTRY_URL"}


def field_exists(model: type[BaseModel], path: list[str]) -> bool:
    field = model.model_fields.get(path[0])
    if field is None:
        return False
    if len(path) == 1:
        return True
    sub = field.annotation
    return isinstance(sub, type) and issubclass(sub, BaseModel) and field_exists(sub, path[1:])


def secret_str_keys(model: type[BaseModel], prefix: str = PREFIX) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            keys |= secret_str_keys(ann, f"{prefix}{name.upper()}__")
        elif SecretStr in getattr(ann, "__args__", (ann,)):
            keys.add(f"{prefix}{name.upper()}")
    return keys


def configmap_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    return dict(find(docs, "ConfigMap", "streamrec-settings")[0]["data"])


def secret_env(overlay: str, docs: list[dict[str, Any]]) -> dict[str, str]:
    secrets = find(docs, "Secret", "streamrec-secrets")
    if secrets:
        return {k: base64.b64decode(v).decode() for k, v in secrets[0]["data"].items()}
    # prod: the Secret is created out of band; its keys are documented in secrets.env.example.
    example = (DEPLOY / "k8s" / "overlays" / overlay / "secrets.env.example").read_text().splitlines()
    keys = [line.split("=", 1)[0] for line in example if line and not line.startswith("#")]
    return {k: "postgresql://u:s3cr3t-value@db:5432/x" if k.endswith("URL") else "s3cr3t-value" for k in keys}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_key_is_a_settings_field(resources, overlay):
    env = configmap_env(resources[overlay]) | secret_env(overlay, resources[overlay])
    unknown = [k for k in env if not k.startswith(PREFIX)
               or not field_exists(Settings, k.removeprefix(PREFIX).lower().split("__"))]
    assert not unknown, f"keys the code does not read: {unknown}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_in_the_configmap(resources, overlay):
    leaked = set(configmap_env(resources[overlay])) & (SECRET_KEYS | secret_str_keys(Settings))
    assert not leaked


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_env_loads_into_settings(resources, overlay, monkeypatch, tmp_path):
    for key in [k for k in os.environ if k.startswith(PREFIX)]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    env = configmap_env(resources[overlay]) | secret_env(overlay, resources[overlay])
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()
    assert settings.mode == "production"
    assert settings.kafka.bootstrap_servers and settings.redis.url and settings.database.url
    # every process defaults to loopback; in a pod it must listen on the pod IP for probes and Services
    assert settings.api.host == settings.worker.host == settings.publisher.host == "0.0.0.0"
    assert_ports_match(resources[overlay], settings)


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(docs, "Deployment", name)[0]["spec"]["template"]["spec"]["containers"][0]


def assert_ports_match(docs: list[dict[str, Any]], settings: Settings) -> None:
    expected = {"streamrec-api": (settings.api.port, "services.api"),
                "streamrec-worker": (settings.worker.metrics_port, "streams.worker"),
                "streamrec-publisher": (settings.publisher.metrics_port, "services.publisher")}
    for name, (port, module) in expected.items():
        spec = container(docs, name)
        assert spec["ports"][0]["containerPort"] == port, name
        assert spec["command"] == ["python", "-m", module]
        assert spec["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert spec["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_a_placeholder_secret_is_refused(resources, monkeypatch, tmp_path):
    for key in [k for k in os.environ if k.startswith(PREFIX)]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    env = configmap_env(resources["prod"]) | secret_env("prod", resources["prod"])
    env["STREAMREC_KAFKA__SASL_PASSWORD"] = "changeme"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(Exception, match="placeholder"):
        load_settings()
