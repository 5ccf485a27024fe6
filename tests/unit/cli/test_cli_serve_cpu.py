"""``bench serve``'s ``cpu_split``: the API workers' counters read from their /metrics text, summed over
the workers seen before and after the load; the parts add up to the API's CPU measured from outside."""

from __future__ import annotations

from services.cli.serve_cpu import cpu_split, parse


def _text(pid: str, feed: tuple[float, int], shed: tuple[float, int], process: float, loop: float,
          pool: float) -> str:
    return (f"streamrec_api_feed_cpu_seconds_sum {feed[0]}\nstreamrec_api_feed_cpu_seconds_count {feed[1]}\n"
            f'streamrec_api_feed_cpu_seconds_count{{tenant="t2"}} 5\n'
            f"streamrec_api_shed_cpu_seconds_sum {shed[0]}\nstreamrec_api_shed_cpu_seconds_count {shed[1]}\n"
            "# TYPE streamrec_api_worker_cpu_seconds counter\n"
            f'streamrec_api_worker_cpu_seconds_total{{pid="{pid}",thread="process"}} {process}\n'
            f'streamrec_api_worker_cpu_seconds_total{{pid="{pid}",thread="loop"}} {loop}\n'
            f'streamrec_api_worker_cpu_seconds_total{{pid="{pid}",thread="feed_pool"}} {pool}\n')


def test_the_split_sums_the_workers_and_adds_up_to_the_api_cpu() -> None:
    before = dict([parse(_text("1", (1.0, 100), (0.1, 50), 10.0, 3.0, 2.0)),
                   parse(_text("2", (2.0, 200), (0.2, 60), 20.0, 6.0, 4.0))])
    after = dict([parse(_text("1", (1.6, 200), (0.2, 150), 12.0, 3.5, 2.7)),
                  parse(_text("2", (2.4, 300), (0.3, 160), 22.0, 6.5, 4.5))])
    assert before["1"].feeds == 105  # every tenant's feeds
    out = cpu_split(before, after, api_cpu_s=4.5, answered=500, workers=2)
    assert out["workers_seen"] == 2 and out["computed_feeds"] == 200 and out["shed_answers"] == 200
    assert out["feed_thread_cpu_ms_per_feed"] == 5.0 and out["shed_cpu_ms_per_shed"] == 1.0
    assert abs(out["remainder_cpu_s"] - 3.3) < 1e-9  # type: ignore[operator]
    parts = out["remainder_parts_s"]
    assert parts == {"loop_thread_less_shed": 0.8, "feed_threads_outside_feeds": 0.2,  # type: ignore[comparison-overlap]
                     "other_worker_threads": 1.8, "residual_outside_workers": 0.5}
    total = out["feed_thread_cpu_s"] + out["shed_cpu_s"] + sum(parts.values())  # type: ignore[operator,union-attr]
    assert abs(total - 4.5) < 1e-6


def test_a_worker_missing_from_one_scrape_is_left_out() -> None:
    before = dict([parse(_text("1", (1.0, 100), (0.0, 0), 10.0, 3.0, 2.0))])
    after = dict([parse(_text("1", (1.5, 200), (0.0, 0), 11.0, 3.2, 2.6)),
                  parse(_text("2", (9.0, 900), (0.0, 0), 99.0, 9.0, 9.0))])
    out = cpu_split(before, after, api_cpu_s=2.0, answered=100, workers=2)
    assert out["workers_seen"] == 1 and out["computed_feeds"] == 100 and out["shed_cpu_ms_per_shed"] is None
