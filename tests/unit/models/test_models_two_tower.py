from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import ArtifactError
from models.two_tower import TwoTowerConfig, TwoTowerModel
from models.two_tower_serving import TwoTowerServing
from models.two_tower_train import TwoTowerTrainConfig, make_windows, train_two_tower

N_ITEMS = 30


def _sequences(n_users: int = 40, seed: int = 0) -> list[np.ndarray]:
    # a strongly sequential world: each user walks i -> i+1 (mod N_ITEMS) from a random start
    rng = np.random.default_rng(seed)
    return [(rng.integers(0, N_ITEMS) + np.arange(12)) % N_ITEMS for _ in range(n_users)]


def _train(seed: int = 0, epochs: int = 6) -> TwoTowerModel:
    content = np.random.default_rng(1).normal(size=(N_ITEMS, 6)).astype(np.float32)
    cfg = TwoTowerConfig(n_items=N_ITEMS, content_dim=6, dim=16, max_len=8, n_layers=1, dropout=0.0)
    return train_two_tower(_sequences(), N_ITEMS, content, cfg,
                           TwoTowerTrainConfig(epochs=epochs, batch_size=16, lr=1e-2, seed=seed))


@pytest.fixture(scope="module")
def model() -> TwoTowerModel:
    return _train()


def test_shapes_and_unit_norm(model: TwoTowerModel):
    hist = torch.tensor([[0, 0, 3, 4], [1, 2, 3, 4]])
    per_pos = model(hist)
    assert per_pos.shape == (2, 4, 16)
    users = model.user_vectors(hist)
    assert users.shape == (2, 16)
    assert torch.allclose(users.norm(dim=1), torch.ones(2), atol=1e-5)
    assert model.item_vectors(torch.arange(1, N_ITEMS + 1)).shape == (N_ITEMS, 16)
    assert model.item_vectors_from_content(torch.zeros(3, 6)).shape == (3, 16)


def test_windows_are_next_item_pairs():
    inputs, targets = make_windows([np.array([0, 1, 2, 3])], max_len=3)
    assert inputs.tolist() == [[1, 2, 3]] and targets.tolist() == [[2, 3, 4]]


def test_learns_the_sequence(model: TwoTowerModel):
    serving = TwoTowerServing(model, [f"i{n}" for n in range(N_ITEMS)])
    user = serving.user_vectors([["i3", "i4", "i5"]])
    ids, _ = serving.build_index().search(user, 3)
    assert "i6" in ids[0]


def test_training_is_seeded_and_reproducible():
    a, b = _train(seed=3, epochs=1), _train(seed=3, epochs=1)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k


def test_export_round_trip_and_cold_items(model: TwoTowerModel, tmp_path: Path):
    serving = TwoTowerServing(model, [f"i{n}" for n in range(N_ITEMS)], meta={"content_backend": "x"})
    manifest = serving.save(tmp_path / "tt")
    assert manifest["item_count"] == N_ITEMS
    back = TwoTowerServing.load(tmp_path / "tt")
    hist = [["i1", "i2", "unknown"], []]
    np.testing.assert_allclose(back.user_vectors(hist), serving.user_vectors(hist), atol=1e-6)
    vecs = back.item_vectors(["i1", "brand-new"], content=np.ones((2, 6), np.float32))
    assert vecs.shape == (2, 16) and np.linalg.norm(vecs[1]) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(KeyError):
        back.item_vectors(["brand-new"])


def test_corrupted_weights_refused(model: TwoTowerModel, tmp_path: Path):
    d = tmp_path / "tt"
    TwoTowerServing(model, [f"i{n}" for n in range(N_ITEMS)]).save(d)
    raw = (d / "weights.pt").read_bytes()
    (d / "weights.pt").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        TwoTowerServing.load(d)



# validation NDCG@10 per epoch of one ml-100k leave-one-out run (seed 2): rising, with noise of about
# a standard error of the thousand validation points
SEED2_CURVE = [0.0375, 0.0361, 0.0297, 0.0301, 0.0346, 0.0617, 0.0598, 0.0633, 0.0668, 0.0703, 0.0771,
               0.0781, 0.0783, 0.0758, 0.0823, 0.0834, 0.0851, 0.0849, 0.0839, 0.0857, 0.0886, 0.0922,
               0.0862, 0.0883, 0.0945, 0.0901, 0.0964, 0.0955, 0.0942, 0.0931, 0.0960, 0.0926, 0.0935,
               0.0948, 0.0992, 0.1015, 0.0968, 0.0963, 0.0984, 0.1025, 0.1029, 0.0952, 0.0995]


def _stop_epoch(stopper, curve: list[float]) -> int | None:
    return next((e for e, s in enumerate(curve, 1) if stopper.flat(s)), None)


def test_early_stopping_watches_the_running_mean_not_single_noisy_scores():
    from models.two_tower_train import _Stopper

    assert _stop_epoch(_Stopper(patience=6, window=1), SEED2_CURVE) == 33  # stopped at 0.0964
    assert _stop_epoch(_Stopper(patience=6, window=5), SEED2_CURVE) is None  # still rising: goes on
    assert _stop_epoch(_Stopper(patience=6, window=5), [0.1, 0.2, 0.3] + [0.25] * 20) == 13  # a plateau stops
