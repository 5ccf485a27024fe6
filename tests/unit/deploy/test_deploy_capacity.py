"""The capacity model in deploy/README.md is what deploy/capacity.py makes of the committed bench JSON,
and the model follows its measured inputs."""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from deploy_helpers import DEPLOY

INGEST, INGEST2 = DEPLOY / "bench" / "ingest.json", DEPLOY / "bench" / "ingest-2w.json"


def _capacity() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_capacity", DEPLOY / "capacity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _args(**kw: float) -> argparse.Namespace:
    base = {"target": 0.7, "redis_target": 0.5, "api_cpu_ms": 10.0, "events_per_feed": 25.0,
            "dedupe_ttl_s": 3600.0}
    return argparse.Namespace(**{**base, **kw})


def test_the_readme_table_is_the_scripts_output_on_the_committed_json(capsys: Any) -> None:
    cap = _capacity()
    text = cap.main(["--ingest", str(INGEST), "--ingest2", str(INGEST2)])
    capsys.readouterr()
    readme = (DEPLOY / "README.md").read_text()
    section = readme.split(cap.BEGIN, 1)[1].split(cap.END, 1)[0]
    assert section.strip() == text.strip()
    assert "| 1,000,000 |" in text


def test_the_model_follows_its_inputs(tmp_path: Path) -> None:
    cap = _capacity()
    ingest = json.loads(INGEST.read_text())
    base = {r["events_per_s"]: r for r in cap.plan(ingest, _args())}
    slower = copy.deepcopy(ingest)
    slower["cpu_s_per_1k_events_by_role"]["workers"] *= 2
    doubled = {r["events_per_s"]: r for r in cap.plan(slower, _args())}
    assert doubled[1_000_000]["worker_pods"] >= 2 * base[1_000_000]["worker_pods"] - 1
    hot = copy.deepcopy(ingest)
    hot["hottest_slot_share"] = 0.5
    assert "busiest Redis slot" in cap.row(1_000_000, hot, _args())["first_bound"]
    section = tmp_path / "README.md"
    section.write_text(f"before\n{cap.BEGIN}\nold\n{cap.END}\nafter\n")
    cap.into_readme(section, "new table")
    assert section.read_text() == f"before\n{cap.BEGIN}\nnew table\n{cap.END}\nafter\n"
