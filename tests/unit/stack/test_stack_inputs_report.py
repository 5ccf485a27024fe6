"""File parsing for `streamrec produce` and the demo's report/scrape helpers (no I/O services)."""

from __future__ import annotations

from pathlib import Path

from core.events import Interaction
from services.demo.inputs import InvalidLine, read_interactions
from services.demo.report import histogram, line_chart, render_html
from services.demo.scrape import parse_worker_counts


def test_jsonl_valid_and_invalid_lines(tmp_path: Path):
    f = tmp_path / "in.jsonl"
    f.write_text('{"user_id": "u1", "item_id": "i1", "type": "click", "context": {"device": "mobile"}}\n'
                 "\n"
                 "{broken\n"
                 '{"user_id": "u1", "item_id": "i1", "type": "teleport"}\n'
                 '{"user_id": "u2", "item_id": "i2", "type": "like", "event_id": "e9", "timestamp": 1.7e9}\n')
    out = list(read_interactions(f))
    assert [type(o) for o in out] == [Interaction, InvalidLine, InvalidLine, Interaction]
    first, bad_json, bad_type, last = out
    assert isinstance(first, Interaction) and first.context == {"device": "mobile"}
    assert first.event_id.startswith("f-")
    assert isinstance(bad_json, InvalidLine) and bad_json.line == 3 and "not JSON" in bad_json.reason
    assert isinstance(bad_type, InvalidLine) and bad_type.reason.startswith("type")
    assert isinstance(last, Interaction) and last.event_id == "e9"
    again = list(read_interactions(f))
    assert isinstance(again[0], Interaction) and again[0].event_id == first.event_id  # idempotent ids


def test_csv_with_context_columns(tmp_path: Path):
    f = tmp_path / "in.csv"
    f.write_text("user_id,item_id,type,value,context.device\nu1,i1,dwell,42.5,tablet\nu2,,click,1,mobile\n")
    ok, bad = list(read_interactions(f))
    assert isinstance(ok, Interaction) and ok.value == 42.5 and ok.context == {"device": "tablet"}
    assert isinstance(bad, InvalidLine) and bad.line == 3 and "item_id" in bad.reason


METRICS = """# HELP streamrec_worker_events_total records consumed by outcome
# TYPE streamrec_worker_events_total counter
streamrec_worker_events_total{agent="interactions",outcome="applied"} 90.0
streamrec_worker_events_total{agent="interactions",outcome="dead_lettered"} 7.0
streamrec_worker_events_total{agent="interactions",outcome="duplicate"} 2.0
streamrec_worker_events_total{agent="items",outcome="applied"} 500.0
"""


def test_worker_counts_read_only_the_interactions_agent():
    counts = parse_worker_counts(METRICS)
    assert (counts.applied, counts.dead_lettered, counts.duplicate) == (90.0, 7.0, 2.0)
    assert parse_worker_counts("").applied == 0.0


def test_report_has_svg_plots():
    chart = line_chart("t", [0.0, 1.0, 2.0], {"a": [1.0, 3.0, 2.0]})
    assert chart.startswith("<svg") and "polyline" in chart and 'points="' in chart
    assert histogram("h", [1.0, 2.0, 2.0, 50.0]).count("<rect") == 30
    page = render_html({"events_produced": 3, "timeline": [
        {"t": 1.0, "produced_per_s": 1.0, "processed_per_s": 1.0, "feeds_per_s": 0.0, "dlq_per_s": 0.0}],
        "dlq_reasons": {"unparseable": 2}, "personalisation_lift": 1.7,
        "learning_curve": [{"t": 10.0, "personalisation_lift": 1.2},
                           {"t": 20.0, "personalisation_lift": 1.8}]},
        [5.0, 7.0])
    assert page.count("<svg") == 3 and "unparseable: 2" in page and "events_produced" in page
    assert "personalisation_lift at the end: 1.7" in page and "1.0 = random catalogue items" in page
