import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from models.data import Interactions, leave_one_out
from models.eval_features import CandidateConfig
from models.evaluation import EvalConfig, run_evaluation
from models.ranker_train import RankerTrainConfig
from models.two_tower_train import TwoTowerTrainConfig

TINY = EvalConfig(two_tower={"n_layers": 1, "max_len": 6, "dim": 16, "dropout": 0.0},
                  two_tower_train=TwoTowerTrainConfig(epochs=2, batch_size=32, eval_every=1),
                  candidates=CandidateConfig(n_tt=10, n_cv=5, n_pop=5),
                  ranker_train=RankerTrainConfig(epochs=2), use_content_model=False)


def _log(n_users: int = 30, n_items: int = 25, length: int = 10) -> Interactions:
    rng = np.random.default_rng(0)
    users, items, ts = [], [], []
    for u in range(n_users):
        start = rng.integers(0, n_items)
        for t in range(length):
            users.append(f"u{u}")
            items.append(f"i{(start + t) % n_items}")
            ts.append(1000.0 + u * 10 + t // 2)  # pairs of tied timestamps
    log = Interactions.from_arrays(users, items, ts)
    log.attach_items({f"i{n}": (f"item {n}", [f"c{n % 3}"]) for n in range(n_items)})
    return log


def test_result_shape_and_sanity():
    out = run_evaluation(_log(), TINY)
    assert set(out["baselines"]) == {"pop", "itemknn", "covisit"}
    for metrics in [out["metrics"], *out["baselines"].values()]:
        assert {"ndcg@10", "hr@10", "recall@50", "mrr", "coverage@10", "novelty@10"} <= set(metrics)
        assert 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0
    assert out["train_seconds"] > 0 and out["protocol"]["eval_users"] == 30
    assert "items_unseen_in_train" in out["slices"]
    # the world is a deterministic walk: co-visitation must find it
    assert out["baselines"]["covisit"]["hr@10"] > out["baselines"]["pop"]["hr@10"]


def test_history_excluded_from_ranking():
    log = _log()
    split = leave_one_out(log)
    for u in range(log.n_users):
        assert split.test_item[u] not in set(split.train_seq[u].tolist())


def test_cli_csv(tmp_path: Path, monkeypatch):
    import models.evaluation as evaluation
    from services.cli.evaluate import app

    log = _log()
    csv = tmp_path / "e.csv"
    triples = zip(log.users, log.items, log.timestamps, strict=True)
    rows = [f"{log.user_ids[u]},{log.item_ids[i]},{t}" for u, i, t in triples]
    csv.write_text("user_id,item_id,timestamp\n" + "\n".join(rows) + "\n")
    monkeypatch.setattr(evaluation, "EvalConfig", lambda **kw: TINY)
    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["--data", str(csv), "--format", "csv", "--json", str(out)])
    assert res.exit_code == 0, res.output
    assert json.loads(out.read_text())["metrics"]["ndcg@10"] >= 0.0
