from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ArtifactError
from core.protocols import Ranker
from models.ranker import MultiTaskRanker, RankerConfig
from models.ranker_serving import RankerServing, featurize
from models.ranker_train import RankerTrainConfig, RankingData, train_ranker

CFG = RankerConfig(dense_features=("signal", "noise", "user_age"), sparse_features=("genre",))


def _data(groups: int = 60, k: int = 10, seed: int = 0) -> RankingData:
    rng = np.random.default_rng(seed)
    dense = rng.normal(size=(groups, k, 3)).astype(np.float32)
    best = dense[:, :, 0].argmax(1)
    click = np.zeros((groups, k), np.float32)
    click[np.arange(groups), best] = 1.0
    deep = click * (dense[:, :, 2] > 0)
    sparse = rng.integers(1, 50, size=(groups, k, 1))
    return RankingData(dense, sparse, {"click": click, "deep": deep}, np.ones((groups, k), bool))


@pytest.fixture(scope="module")
def serving() -> RankerServing:
    model = train_ranker(_data(), CFG, RankerTrainConfig(epochs=15, lr=1e-2, seed=0))
    return RankerServing(model, version="r1", head_weights={"click": 1.0, "deep": 0.5})


def test_forward_shapes():
    out = MultiTaskRanker(CFG)(torch.zeros(5, 3), torch.zeros(5, 1, dtype=torch.long))
    assert set(out) == {"click", "deep"} and out["click"].shape == (5,)


def test_learns_signal_and_implements_protocol(serving: RankerServing):
    assert isinstance(serving, Ranker)
    items = [{"signal": s, "noise": 0.0, "genre": "drama"} for s in (-2.0, 0.0, 2.5)]
    out = serving.score({"user_age": 1.0}, items)
    assert set(out) == {"click", "deep", "score"} and out["click"].dtype == np.float32
    assert out["click"].argmax() == 2
    np.testing.assert_allclose(out["score"], out["click"] + 0.5 * out["deep"], rtol=1e-5)


def test_featurize_item_first_then_user_and_missing():
    dense, sparse = featurize({"user_age": 3.0, "signal": 9.0}, [{"signal": 1.0, "genre": "x"}, {}], CFG)
    assert dense[0, 0] == 1.0 and dense[1, 0] == 9.0 and dense[0, 2] == 3.0
    assert np.isnan(dense[0, 1]) and sparse[0, 0] > 0 and sparse[1, 0] == 0


def test_missing_features_do_not_break_scoring(serving: RankerServing):
    out = serving.score({}, [{"signal": "n/a"}, {}])
    assert np.all(np.isfinite(out["score"]))


def test_export_round_trip(serving: RankerServing, tmp_path: Path):
    serving.save(tmp_path / "r")
    back = RankerServing.load(tmp_path / "r", head_weights={"click": 1.0, "deep": 0.5})
    items = [{"signal": 0.3, "noise": 1.0, "genre": "a"}, {"signal": -1.0, "noise": 0.0}]
    for head, scores in serving.score({"user_age": 0.5}, items).items():
        np.testing.assert_allclose(back.score({"user_age": 0.5}, items)[head], scores, rtol=1e-6)
    assert back.version == "r1" and back.config == CFG


def test_corrupted_ranker_refused(serving: RankerServing, tmp_path: Path):
    d = tmp_path / "r"
    serving.save(d)
    raw = bytearray((d / "weights.pt").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (d / "weights.pt").write_bytes(bytes(raw))
    with pytest.raises(ArtifactError, match="checksum"):
        RankerServing.load(d)


def test_from_rows_pointwise():
    rows = [{"signal": float(s), "noise": 0.0, "user_age": 1.0} for s in range(8)]
    data = RankingData.from_rows(rows, {"click": [0, 0, 0, 0, 1, 1, 1, 1], "deep": [0] * 8}, CFG)
    model = train_ranker(data, CFG, RankerTrainConfig(epochs=5, listwise=False))
    assert model(torch.zeros(2, 3), torch.zeros(2, 1, dtype=torch.long))["click"].shape == (2,)


def test_from_requests_groups_and_pads():
    reqs = [({"user_age": 1.0}, [{"signal": 1.0}, {"signal": 0.0}], {"click": [1, 0]}),
            ({}, [{"signal": 2.0}], {"click": [1], "deep": [1]})]
    data = RankingData.from_requests(reqs, CFG)
    assert data.dense.shape == (2, 2, 3) and data.mask.tolist() == [[True, True], [True, False]]
    assert data.labels["click"].tolist() == [[1, 0], [1, 0]] and data.labels["deep"][1, 0] == 1
    model = train_ranker(data, CFG, RankerTrainConfig(epochs=2))
    assert isinstance(model, MultiTaskRanker)


@pytest.mark.parametrize("n", [1, 7, 500])
def test_traced_ranker_scores_equal_the_eager_model_bit_for_bit(serving: RankerServing, n: int):
    rng = np.random.default_rng(n)
    dense = rng.normal(size=(n, 3)).astype(np.float32)
    dense[rng.random(size=dense.shape) < 0.2] = np.nan  # unknown values: the training mean
    sparse = rng.integers(0, 50, size=(n, 1))
    got = serving.score_arrays(dense, sparse)
    assert isinstance(serving._forward, torch.jit.ScriptModule)  # the traced pass scored them
    with torch.inference_mode():
        eager = serving.model(torch.from_numpy(dense), torch.from_numpy(sparse))
    for head, logits in eager.items():
        np.testing.assert_array_equal(got[head], torch.sigmoid(logits).numpy())


def test_an_ensemble_averages_members_fitted_with_their_own_seeds():
    """Member 0 of a three-member ranker is the one-member ranker of the same seed, the others differ,
    and the ensemble's logits are the mean of its members' (through save and load too)."""
    train_cfg = RankerTrainConfig(epochs=4, lr=1e-2, seed=3)
    single = train_ranker(_data(), CFG, train_cfg)
    ensemble = train_ranker(_data(), replace(CFG, members=3), train_cfg)
    dense, sparse = torch.randn(7, 3), torch.randint(1, 50, (7, 1))
    with torch.no_grad():
        members = [m(dense, sparse)["click"] for m in ensemble.members]
        torch.testing.assert_close(members[0], single(dense, sparse)["click"])
        assert not torch.allclose(members[0], members[1])
        torch.testing.assert_close(ensemble(dense, sparse)["click"], torch.stack(members).mean(0))


def test_an_ensemble_round_trips(tmp_path: Path):
    model = train_ranker(_data(), replace(CFG, members=2), RankerTrainConfig(epochs=2, seed=1))
    RankerServing(model, version="e1").save(tmp_path / "e")
    back = RankerServing.load(tmp_path / "e")
    dense = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(back.score_arrays(dense)["click"],
                               RankerServing(model).score_arrays(dense)["click"], rtol=1e-6)
    assert back.config.members == 2
