"""bench ope's accuracy summary is JSON (numpy scalars from the truth and the estimates are not)."""

from __future__ import annotations

import json

import numpy as np

from services.cli.bench_ope import _accuracy


def test_the_accuracy_run_summary_serialises_and_judges_the_error() -> None:
    est = {"position_based": {"dr": {"value": np.float64(0.105), "ci": [np.float64(0.09), np.float64(0.12)],
                                     "se": 0.007},
                              "dr_uncapped": {"value": np.float64(0.2)}}, "capped_share": np.float64(0.001)}
    run = {"policies": {"p": {"truth": np.float64(0.1), "estimates": est},
                        "q": {"truth": np.float64(0.2), "estimates": est}}}
    out = json.loads(json.dumps(_accuracy(run)))
    assert out["p"]["within_10pct"] is True and out["p"]["ci_covers"] is True
    assert out["q"]["within_10pct"] is False and out["q"]["ci_covers"] is False
    assert round(out["p"]["rel_error"], 6) == 0.05
    assert out["p"]["dr_uncapped"] == 0.2 and out["p"]["capped_share"] == 0.001
