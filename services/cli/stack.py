"""``streamrec up | demo | produce | feeds``: run the platform locally and talk to its topics."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.progress import Progress

from core.errors import BrokerUnavailable, StartupError
from core.events import encode
from core.settings import ConfigError, Settings, load_settings
from core.topics import Topics
from services.demo.inputs import InvalidLine, count_lines, read_interactions
from services.demo.kafka_io import FeedRecord, make_producer, make_reader, read_feeds
from services.demo.report import write_html, write_json
from services.demo.runner import Demo, DemoOptions
from services.localstack import FRESH_HELP
from services.stack import STATUS_FILE, Stack
from services.stackstatus import StatusReport, read_status

DURATION_HELP = "seconds from the command's start (stack start-up included) to the end of traffic"
DEFAULT_JSON = Path("var/demo/summary.json")
app = typer.Typer(no_args_is_help=True)
console = Console()
err_console = Console(stderr=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="TOML config (else $STREAMREC_CONFIG "
                                                "or ./streamrec.toml)")]


def _settings(config: Path | None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        keys = escape(", ".join(exc.keys))
        err_console.print(f"[red]configuration error[/red] ({keys}):\n{escape(str(exc))}")
        raise typer.Exit(2) from None
    # Through the console, so log lines print above the live progress display instead of into it.
    logging.basicConfig(level=settings.log_level, format="%(name)s: %(message)s", datefmt="[%X]",
                        handlers=[RichHandler(console=err_console, show_path=False)])
    for noisy in ("kafka", "feast"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return settings


def _fail(exc: Exception) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {escape(str(exc))}")
    return typer.Exit(1)


def _need_broker(settings: Settings) -> None:
    if not settings.kafka.bootstrap_servers:
        err_console.print("[red]kafka.bootstrap_servers is not set[/red]: start the stack with `streamrec up`"
                          " and set STREAMREC_KAFKA__BOOTSTRAP_SERVERS to the address it prints")
        raise typer.Exit(2)


FreshOpt = Annotated[bool, typer.Option("--fresh", help=FRESH_HELP)]


@app.command()
def up(config: ConfigOpt = None, fresh: FreshOpt = False) -> None:
    """Start broker + Redis (unless configured), topics, Feast, worker, API, publisher, scheduler, eraser;
    supervise them (a child that dies is restarted on the same port, with backoff) in the foreground
    until Ctrl-C or SIGTERM, then stop everything. `streamrec status` reports on it from another shell."""
    stack = Stack(_settings(config), fresh=fresh)
    try:
        with console.status("starting the stack"):
            stack.start()
        _print_endpoints(stack)
        stack.run_forever()
    except KeyboardInterrupt:
        pass
    except (StartupError, BrokerUnavailable) as exc:
        raise _fail(exc) from None
    finally:
        stack.stop()  # idempotent; covers a signal between start() and run_forever()
    console.print("stopped.")


def _print_endpoints(stack: Stack) -> None:
    s = stack.settings
    console.print("[green]streamrec is up[/green]")
    rows = [("kafka", str(s.kafka.bootstrap_servers)), ("redis", str(s.redis.url)),
            *((name, stack.url(name)) for name in stack.ports), ("db", str(s.database.url)),
            ("logs", str(stack.log_dir)), ("status", f"{stack.status_path} (streamrec status)")]
    for name, where in rows:
        console.print(f"  {name:<10} {where}", soft_wrap=True, highlight=False)
    # One unwrapped line, so it pastes whole into another shell.
    console.print("Other shells: export "
                  f"STREAMREC_KAFKA__BOOTSTRAP_SERVERS={s.kafka.bootstrap_servers} "
                  f"STREAMREC_REDIS__URL={s.redis.url} STREAMREC_DATA_DIR={s.data_dir}",
                  soft_wrap=True, highlight=False, markup=False)
    console.print("Ctrl-C to stop.")


@app.command()
def status(
    config: ConfigOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the raw status file")] = False,
) -> None:
    """Report on a running `streamrec up` (same data_dir): each component's state, pid, address and
    restarts. Exit 0 when ready, 1 when up but not ready, 3 when not running."""
    settings = _settings(config)
    report = read_status(settings.data_dir / STATUS_FILE)
    if as_json:
        typer.echo(json.dumps(report.raw, indent=2, sort_keys=True))
    else:
        _print_status(report)
    raise typer.Exit(report.exit_code)


def _print_status(report: StatusReport) -> None:
    console.print(report.headline, soft_wrap=True, highlight=False, markup=False)
    for name, c in sorted(report.components.items(), key=lambda kv: (kv[1].get("kind") != "infra", kv[0])):
        state = c.get("state", "?")
        if state == "running" and not c.get("ready"):
            state = "running, not ready"
        restarts = f"{c.get('restarts', 0)} restarts"
        if c.get("restarts"):
            restarts += f", last exit {c.get('last_exit')}"
        pid = str(c.get("pid") or "-")
        console.print(f"  {name:<10} {state:<20} pid {pid:<8} {c.get('address', ''):<28} {restarts}",
                      soft_wrap=True, highlight=False, markup=False)


@app.command()
def demo(
    config: ConfigOpt = None,
    duration: Annotated[float, typer.Option(help=DURATION_HELP)] = 120.0,
    rate: Annotated[float, typer.Option(help="interactions per second")] = 150.0,
    malformed: Annotated[float, typer.Option(help="fraction of malformed events (DLQ demo)")] = 0.01,
    users: int = 300,
    items: int = 1000,
    seed: int = 0,
    ready_timeout: Annotated[float, typer.Option(help="seconds to wait for the processes' /readyz")] = 120.0,
    json_path: Annotated[Path, typer.Option("--json", help="JSON summary path")] = DEFAULT_JSON,
    report: Annotated[Path | None, typer.Option(help="HTML report (default: next to --json)")] = None,
) -> None:
    """Bring the stack up, drive simulated traffic, show progress, stop, write a summary + report."""
    settings = _settings(config)
    opts = DemoOptions(duration_s=duration, rate=rate, malformed_fraction=malformed, n_users=users,
                       n_items=items, seed=seed, ready_timeout_s=ready_timeout)
    runner = Demo(settings, opts, console)
    try:
        summary = runner.execute()
    except (StartupError, BrokerUnavailable, RuntimeError) as exc:
        raise _fail(exc) from None
    report_path = report or json_path.with_name("report.html")
    write_json(summary, json_path)
    write_html(summary, runner.latencies_ms, report_path)
    _print_summary(summary, json_path, report_path)
    if problems := demo_problems(summary):
        err_console.print(f"[red]demo failed:[/red] {escape('; '.join(problems))}")
        raise typer.Exit(1)


def demo_problems(summary: dict[str, Any]) -> list[str]:
    """What makes a demo run a failure (so `make demo` goes red instead of hiding it)."""
    problems = []
    if not summary["events_produced"] or not summary["feeds_published"]:
        problems.append("no events produced or no feeds published")
    if not summary["invariant_holds"]:
        problems.append("events_processed + events_dead_lettered + events_skipped != events_produced "
                        "(the worker did not catch up in time)")
    if summary["child_restarts"]:
        problems.append(f"processes crashed and were restarted: {summary['child_restarts']} (see their logs)")
    return problems


def _print_summary(summary: dict[str, object], json_path: Path, report_path: Path) -> None:
    keys = ("events_produced", "events_processed", "events_dead_lettered", "events_skipped",
            "invariant_holds", "feeds_published", "users_with_feed", "feed_latency_ms_p50",
            "feed_latency_ms_p99", "personalisation_lift", "startup_s", "traffic_s")
    for k in keys:
        console.print(f"  {k:<24} {summary.get(k)}")
    console.print(f"summary: {json_path}\nreport:  {report_path}")


@app.command()
def produce(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="JSONL or CSV interactions")],
    config: ConfigOpt = None,
    fmt: Annotated[str | None, typer.Option("--format", help="jsonl or csv (default: from suffix)")] = None,
) -> None:
    """Send interactions from a JSONL or CSV file to the interactions topic (invalid lines reported)."""
    settings = _settings(config)
    _need_broker(settings)
    topic = Topics(settings.kafka.topic_prefix).interactions
    try:
        producer = make_producer(settings)
    except BrokerUnavailable as exc:
        raise _fail(exc) from None
    sent, invalid = 0, []
    with Progress(console=console) as progress:
        task = progress.add_task(f"producing to {topic}", total=count_lines(file))
        for rec in read_interactions(file, fmt):
            if isinstance(rec, InvalidLine):
                invalid.append(rec)
            else:
                producer.send(topic, encode(rec), key=rec.user_id.encode())
                sent += 1
            progress.advance(task)
        producer.flush(30)
    producer.close(5)
    console.print(f"sent {sent} interactions to {topic}; {len(invalid)} invalid line(s)")
    for bad in invalid[:20]:
        err_console.print(f"  line {bad.line}: {bad.reason}")
    if invalid:
        raise typer.Exit(1)


@app.command()
def feeds(
    config: ConfigOpt = None,
    user: Annotated[str | None, typer.Option("--user", "-u", help="only this user's feeds")] = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="keep reading new feeds")] = False,
    idle: Annotated[float, typer.Option(help="without --follow: stop after this many idle seconds")] = 2.0,
) -> None:
    """Print feeds from the feeds topic (one JSON line each)."""
    settings = _settings(config)
    _need_broker(settings)
    try:
        consumer = make_reader(settings, Topics(settings.kafka.topic_prefix).feeds)
    except BrokerUnavailable as exc:
        raise _fail(exc) from None
    last = [time.monotonic()]

    def stop() -> bool:
        return not follow and time.monotonic() - last[0] > idle

    try:
        for rec in read_feeds(consumer, stop):
            last[0] = time.monotonic()
            if isinstance(rec, FeedRecord) and (user is None or rec.feed.user_id == user):
                typer.echo(rec.feed.model_dump_json())
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
