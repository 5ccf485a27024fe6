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


def _validated(scores: list[float], epochs: int, patience: int) -> tuple[TwoTowerModel, list[dict]]:
    """Train with a validation that returns ``scores`` in turn; the states it was shown."""
    shown: list[dict] = []
    it = iter(scores)

    def validate(m: TwoTowerModel) -> float:
        shown.append({k: v.clone() for k, v in m.state_dict().items()})
        return next(it)

    content = np.random.default_rng(1).normal(size=(N_ITEMS, 6)).astype(np.float32)
    cfg = TwoTowerConfig(n_items=N_ITEMS, content_dim=6, dim=16, max_len=8, n_layers=1, dropout=0.0)
    train_cfg = TwoTowerTrainConfig(epochs=epochs, batch_size=16, lr=1e-2, eval_every=1, patience=patience)
    return train_two_tower(_sequences(), N_ITEMS, content, cfg, train_cfg, validate), shown


def test_validated_every_epoch_up_to_the_epoch_budget():
    model, shown = _validated([0.1 * k for k in range(1, 9)], epochs=5, patience=2)
    assert len(shown) == 5
    assert all(torch.equal(v, shown[-1][k]) for k, v in model.state_dict().items())


def test_stops_after_patience_flat_validations_and_keeps_the_best():
    # best at the 2nd epoch; the 3rd to 5th do not beat it (a tie is no gain), so the 6th never runs
    model, shown = _validated([0.1, 0.3, 0.2, 0.25, 0.3, 0.9], epochs=6, patience=3)
    assert len(shown) == 5
    assert not torch.equal(shown[1]["users.out.weight"], shown[-1]["users.out.weight"])
    assert all(torch.equal(v, shown[1][k]) for k, v in model.state_dict().items())


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
