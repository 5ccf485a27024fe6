"""``streamrec ope --policy CONFIG --log SOURCE --json OUT``: off-policy estimates of candidate policies.

CONFIG is a TOML file with one policy (``name`` and an ``[overrides]`` table: the overrides of an
experiment arm, e.g. ``diversity_lambda = 0.8``) or several (``[[policies]]``). SOURCE is ``kafka``
(the platform's topics), a JSON-lines dump of the impression log with its interactions and upserts,
or an Open Bandit Pipeline CSV (``*.csv``; its policies are ``[obp]`` tables: ``kind = "uniform" |
"affinity" | "items"``). The output holds IPS, self-normalised IPS and doubly robust estimates with
95% intervals and the effective sample size (see ``services.experiments.ope`` and ``.obp``).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError

from core.settings import ConfigError, Settings, load_settings

app = typer.Typer(help="Off-policy evaluation.")


def _policies(path: Path) -> list[dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise typer.BadParameter(f"policy file {path}: {exc}") from None
    entries = data.get("policies") or [data]
    for k, entry in enumerate(entries):
        entry.setdefault("name", path.stem if len(entries) == 1 else f"policy{k}")
    return list(entries)


def _obp(source: Path, entries: list[dict[str, Any]]) -> dict[str, Any]:
    from services.experiments.obp import ObpPolicy, evaluate_obp

    policies = {e["name"]: ObpPolicy.model_validate(e.get("obp") or {}) for e in entries}
    return evaluate_obp(source, policies)


def _platform(source: str, entries: list[dict[str, Any]], settings: Settings,
              limit: int | None) -> dict[str, Any]:
    from core.experiment_config import ArmOverrides
    from services.experiments.ope import Candidate, evaluate
    from services.experiments.source import read_log
    from services.pipeline.experiments import PinnedRankers

    candidates = [Candidate(e["name"], ArmOverrides.model_validate(e.get("overrides") or {}))
                  for e in entries]
    pinned = {c.overrides.model_version for c in candidates if c.overrides.model_version}
    resolver = PinnedRankers.from_settings(settings) if pinned else None
    try:
        for version in sorted(pinned):
            if resolver is None or not resolver.load_now(version):
                raise ValueError(f"model version {version} could not be loaded from {settings.artifacts_url}")
        return evaluate(read_log(source, settings), settings, candidates, limit=limit, resolver=resolver)
    finally:
        if resolver is not None:
            resolver.stop()


@app.command("ope")
def ope(policy: Path = typer.Option(..., "--policy", exists=True, dir_okay=False, help="policy TOML"),
        log: str = typer.Option(..., "--log", help="'kafka', a JSON-lines log file/dir, or an OBP *.csv"),
        json_out: Path = typer.Option(Path("ope.json"), "--json"),
        limit: int | None = typer.Option(None, min=1, help="evaluate the first N logged feeds only"),
        config: Path | None = typer.Option(None, "--config", "-c", help="streamrec TOML file")) -> None:
    """IPS, SNIPS and doubly robust estimates of each policy's CTR from a logged run."""
    entries = _policies(policy)
    try:
        if log.endswith(".csv"):
            result = _obp(Path(log), entries)
        else:
            result = _platform(log, entries, load_settings(config), limit)
    except (ConfigError, ValidationError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    json_out.write_text(json.dumps(result, indent=2, default=str))
    for name, pol in result["policies"].items():
        est = pol["estimates"].get("position_based") or pol["estimates"]["per_slot"]
        dr = est["dr"]
        lo, hi = dr["ci"]
        typer.echo(f"{name}: DR {dr['value']:.5f} [{lo:.5f}, {hi:.5f}], ESS {dr['ess']:.0f}")
    typer.echo(f"wrote {json_out}")
