"""``streamrec import FILE``: bulk-load interactions, items or users from CSV or Parquet.

Good rows go to the kind's input topic keyed as the platform partitions it (interactions and users by
user id, items by item id), for the worker to apply. Bad rows go to that topic's dead-letter topic in
the worker's format (core.events.DeadLetter, built by iokit.dead_letters), with coordinates
``file:<name>`` / partition 0 / offset = the row number and a detail starting ``row N``. Exit code 0
when every row was good, 1 when some were dead-lettered, 2 for a file that cannot be read at all.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from kafka.errors import KafkaError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from core.errors import BrokerUnavailable
from core.settings import ConfigError, Settings, load_settings
from core.topics import Topics
from iokit.dead_letters import build
from services.cli.import_rows import (
    KINDS,
    Bad,
    Format,
    Good,
    Kind,
    UnreadableFile,
    check,
    columns,
    count_rows,
    detect_kind,
    file_format,
    read_rows,
)
from services.demo.kafka_io import make_producer

app = typer.Typer(no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)
IN_FLIGHT = 5000  # sends awaited in order once this many are pending: a broker error stops the import early
SHOWN_BAD = 20


@dataclass(frozen=True)
class FileRow:
    """A row's coordinates for its dead letter (an iokit.dead_letters.SourceRecord)."""

    topic: str
    offset: int
    value: bytes | None
    key: bytes | None
    partition: int = 0
    timestamp: float = 0.0


@dataclass
class Outcome:
    rows: int = 0
    imported: int = 0
    bad: list[Bad] = field(default_factory=list)


FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV (with a header) or Parquet")]
KindOpt = Annotated[str | None, typer.Option(help="interactions, items or users (default: from the columns)")]
FormatOpt = Annotated[str | None, typer.Option("--format", help="csv or parquet (default: from the suffix)")]
ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="check every row, send nothing")]


@app.command("import")
def import_file(file: FileArg, kind: KindOpt = None, fmt: FormatOpt = None, config: ConfigOpt = None,
                dry_run: DryRunOpt = False) -> None:
    """Send the rows of FILE to the kind's topic; dead-letter bad rows with their row number."""
    settings = _settings(config)
    try:
        form = file_format(file, fmt)
        chosen = _kind(kind) if kind else detect_kind(columns(file, form))
    except UnreadableFile as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None
    topics = Topics(settings.kafka.topic_prefix)
    producer = None if dry_run else _producer(settings)
    try:
        outcome = _run(settings, file, form, chosen, producer)
    except KafkaError as exc:
        err_console.print(f"[red]error:[/red] the broker refused a record ({escape(str(exc))}); rows before "
                          "it may have been sent: importing the file again is safe (ids are kept)")
        raise typer.Exit(1) from None
    finally:
        if producer is not None:
            producer.close(10)
    _report(outcome, chosen, topics, dry_run)
    if outcome.bad:
        raise typer.Exit(1)


def _kind(name: str) -> Kind:
    if name not in KINDS:
        err_console.print(f"[red]error:[/red] --kind must be one of {', '.join(KINDS)}, not {escape(name)!r}")
        raise typer.Exit(2)
    return name  # type: ignore[return-value]


def _settings(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        keys = escape(", ".join(exc.keys))
        err_console.print(f"[red]configuration error[/red] ({keys}):\n{escape(str(exc))}")
        raise typer.Exit(2) from None
    logging.getLogger("kafka").setLevel(logging.ERROR)
    return settings


def _producer(settings: Settings) -> Any:
    if not settings.kafka.bootstrap_servers:
        err_console.print("[red]kafka.bootstrap_servers is not set[/red]: start the stack with `streamrec up`"
                          " and set STREAMREC_KAFKA__BOOTSTRAP_SERVERS to the address it prints")
        raise typer.Exit(2)
    try:
        return make_producer(settings)
    except BrokerUnavailable as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from None


def _run(settings: Settings, file: Path, form: Format, kind: Kind, producer: Any) -> Outcome:
    topics, w = Topics(settings.kafka.topic_prefix), settings.worker
    topic, dlq = topics.name(kind), topics.dlq(kind)
    outcome, pending = Outcome(), deque[Any]()
    columns_ = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns_, console=console) as progress:
        task = progress.add_task(f"{file.name} -> {topic}", total=count_rows(file, form))
        for row in read_rows(file, form):
            result = check(kind, row, time.time(), w.max_future_skew_s, w.max_past_skew_s)
            outcome.rows += 1
            if isinstance(result, Good):
                outcome.imported += 1
                if producer is not None:
                    pending.append(producer.send(topic, key=result.key, value=result.value))
            else:
                outcome.bad.append(result)
                if producer is not None:
                    pending.append(_dead_letter(producer, dlq, file, result))
            while len(pending) > IN_FLIGHT:
                pending.popleft().get(timeout=settings.kafka.connect_timeout_s + 30)
            progress.advance(task)
        if producer is not None:
            producer.flush(60)
        for future in pending:
            future.get(timeout=settings.kafka.connect_timeout_s + 30)
    return outcome


def _dead_letter(producer: Any, dlq: str, file: Path, bad: Bad) -> Any:
    source = FileRow(topic=f"file:{file.name}", offset=bad.row.number, value=bad.raw, key=bad.key)
    letter = build(source, bad.error)
    return producer.send(dlq, key=letter.key, value=letter.value)


def _report(outcome: Outcome, kind: Kind, topics: Topics, dry_run: bool) -> None:
    verb = "would import" if dry_run else "imported"
    console.print(f"{outcome.rows} rows: {verb} {outcome.imported} {kind} to {topics.name(kind)}; "
                  f"{len(outcome.bad)} bad", highlight=False)
    if outcome.bad:
        where = "(not sent: --dry-run)" if dry_run else f"dead-lettered to {topics.dlq(kind)}"
        err_console.print(f"{len(outcome.bad)} bad row(s) {where}:", highlight=False)
        for bad in outcome.bad[:SHOWN_BAD]:
            err_console.print(f"  {bad.error.detail} [{bad.error.reason}]", highlight=False, markup=False)
        if len(outcome.bad) > SHOWN_BAD:
            err_console.print(f"  ... and {len(outcome.bad) - SHOWN_BAD} more", highlight=False)
