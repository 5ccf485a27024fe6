"""``streamrec forget user|item ID``: ask every store to forget a user or an item (the ``deletions``
topic, applied by the eraser, ``python -m services.privacy``), or erase it here and now (``--now``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer

from core.deletions import Deletion
from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="Forget a user or an item in every store.")
ConfigOpt = typer.Option(None, "--config", "-c", help="streamrec TOML file")


@app.command("forget")
def forget(kind: str = typer.Argument(..., help="user | item"), subject: str = typer.Argument(...),
           tenant: str = typer.Option("default", "--tenant", "-t"),
           now: bool = typer.Option(False, "--now", help="erase here, without the eraser process"),
           wait_s: float = typer.Option(0.0, "--wait", help="wait this long for every store to finish"),
           config: Path | None = ConfigOpt) -> None:
    if kind not in ("user", "item"):
        raise typer.BadParameter("kind must be 'user' or 'item'")
    settings = _settings(config, tenant)
    d = Deletion(kind=kind, subject_id=subject, requested_at=time.time())  # type: ignore[arg-type]
    typer.echo(json.dumps(request(settings, d, now, wait_s)))


def _settings(config: Path | None, tenant: str) -> Settings:
    from core.tenancy import scoped

    try:
        return scoped(load_settings(config), tenant)
    except (ConfigError, ValueError) as exc:
        raise typer.BadParameter(str(exc)) from None


def request(settings: Settings, d: Deletion, now: bool, wait_s: float) -> dict[str, object]:
    """Send (or apply, ``now``) ``d``; the request's state in the control database after ``wait_s``."""
    from core.tenancy import control_url
    from services.metadata.access_store import AccessStore
    from services.privacy.service import apply, make_eraser

    access = AccessStore(control_url(settings))
    if now:
        eraser, producer = make_eraser(settings)
        try:
            return {"request_id": d.request_id, "erased": apply(eraser, access, d)}
        finally:
            producer.close()
    _send(settings, d)
    access.record_deletion(d.request_id, settings.tenancy.tenant, d.kind, d.subject_id)
    deadline = time.monotonic() + wait_s
    state = _state(access, d.request_id)
    while state.get("completed_at") is None and time.monotonic() < deadline:
        time.sleep(0.5)
        state = _state(access, d.request_id)
    return state


def _state(access: object, request_id: str) -> dict[str, object]:
    rows = [r for r in access.deletions() if r["request_id"] == request_id]  # type: ignore[attr-defined]
    return rows[0] if rows else {"request_id": request_id}


def _send(settings: Settings, d: Deletion) -> None:
    from kafka import KafkaProducer

    from core.events import encode
    from core.secrets import kafka_options
    from core.topics import Topics

    producer = KafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers, acks="all",
                             client_id=f"{settings.kafka.client_id}-forget", **kafka_options(settings.kafka))
    try:
        producer.send(Topics(settings.kafka.topic_prefix).deletions, key=d.subject_id.encode(),
                      value=encode(d)).get(timeout=30)
    finally:
        producer.close()


