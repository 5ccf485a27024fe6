"""The funnel with real MODELS objects: ANN retrieval from a two-tower index, a multi-task ranker over the
funnel's feature columns, and the heuristic when the ranker's features cannot be read."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from funnel_events import NOW, catalog, click, crowd, memory_state

from core.errors import StoreUnavailable
from core.protocols import Features
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline, vectors_as_bytes
from funnel.features import FEATURES
from funnel.modelset import ModelSet, ModelSlot
from funnel.pipeline import Pipeline
from funnel.scoring import model_heads
from models.index import ItemIndex
from models.item_neighbours import ItemNeighbours
from models.ranker import MultiTaskRanker, RankerConfig
from models.ranker_serving import RankerServing

DIM = 8
RANKED_ON = ("popular_score", "tt_score", "content_sim", "item_pop", "item_ctr_24h", "user_history_len")


class Tower:
    version = "tt-1"

    def user_vector(self, user: Features) -> np.ndarray:
        return np.ones(DIM, np.float32) / np.sqrt(DIM)


def world() -> tuple[MemoryOnline, ItemIndex]:
    """200 items (content vectors = the index's vectors); popularity falls with the item number; user
    ``u`` has clicked i0 40 times."""
    rng = np.random.default_rng(0)
    ids = [f"i{j}" for j in range(200)]
    vecs = rng.standard_normal((200, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    events = crowd({i: 1 + (199 - j) // 20 for j, i in enumerate(ids)})
    events += [click("u", "i0", NOW - 600 + k) for k in range(40)]
    state = memory_state(Settings(), catalog({i: [f"c{j % 7}"] for j, i in enumerate(ids)}), events,
                         vectors=vectors_as_bytes(ids, vecs))
    return state, ItemIndex.build(ids, vecs, model_version="tt-1", version="ix-1")


def ranker(version: str, features: Sequence[str] = RANKED_ON) -> RankerServing:
    return RankerServing(MultiTaskRanker(RankerConfig(dense_features=tuple(features))), version=version)


def test_ann_and_ranker_feed_explains_each_item():
    state, index = world()
    assert set(RANKED_ON) <= set(FEATURES)
    slot = ModelSlot(ModelSet(ranker=ranker("rk-1"), index=index, user_tower=Tower()))
    feed = Pipeline(Settings(), state, slot, reader=state).feed("u", n=20, now=NOW).feed
    assert feed.model_version == "rk-1" and feed.index_version == "ix-1" and not feed.degraded
    assert any(it.source == "ann" for it in feed.items) and "i0" not in {it.item_id for it in feed.items}
    exploit = [it for it in feed.items if not it.explore]
    assert all({"click", "deep"} <= it.scores.keys() and it.propensity == 1.0 for it in exploit)
    assert all(0 < it.propensity < 1 for it in feed.items if it.explore)


def test_ranker_scores_follow_its_feature_columns():
    """The ranker sees the columns it names: the same model scores differently when one of them moves."""
    state, index = world()
    inputs = Pipeline(Settings(), state, ModelSlot(ModelSet(index=index, user_tower=Tower())),
                      reader=state).rank_inputs("u", NOW)
    assert not np.isnan(inputs.matrix[:, FEATURES.index("tt_score")]).any()
    model = ranker("rk-1")
    base = model_heads(model, inputs.matrix)["click"]
    moved = inputs.matrix.copy()
    moved[:, FEATURES.index("tt_score")] += 5.0
    assert not np.allclose(model_heads(model, moved)["click"], base)
    other = inputs.matrix.copy()
    other[:, FEATURES.index("fresh_rank")] += 5.0  # not a column this ranker names
    np.testing.assert_array_equal(model_heads(model, other)["click"], base)


class FeaturesDown:
    def user_features(self, user_id: str) -> Features:
        raise StoreUnavailable("feast down (test)")

    def item_features(self, item_ids: Sequence[str]) -> list[Features]:
        raise StoreUnavailable("feast down (test)")


def test_without_its_features_the_ranker_steps_aside_for_the_heuristic():
    state, index = world()
    slot = ModelSlot(ModelSet(ranker=ranker("rk-1"), index=index, user_tower=Tower()))
    feed = Pipeline(Settings(), state, slot, reader=FeaturesDown()).feed("u", n=10, now=NOW).feed
    assert feed.degraded and feed.model_version == "none" and feed.index_version == "ix-1"
    assert len(feed.items) == 10 and all("prior" in it.scores for it in feed.items if not it.explore)


def test_feed_keeps_the_inputs_it_was_ranked_on():
    """Eval scores each source and the ranker alone on ``FeedResult.inputs``: they are what a separate
    ``rank_inputs`` at the same clock reads, and the ranking did not change them in place."""
    state, index = world()
    pipeline = Pipeline(Settings(), state, ModelSlot(ModelSet(ranker=ranker("rk-1"), index=index,
                                                              user_tower=Tower())), reader=state)
    result = pipeline.feed("u", n=20, now=NOW)
    again = pipeline.rank_inputs("u", NOW)
    assert result.inputs is not None and result.inputs.item_ids == again.item_ids
    assert len(again.item_ids) > 20
    np.testing.assert_array_equal(result.inputs.matrix, again.matrix)
    assert result.inputs.cands.raw == again.cands.raw


def test_relations_score_every_candidate_not_only_their_own():
    """``seq_all_score`` / ``cf_all_score``: the learned relations' normalised score of every candidate,
    also of candidates another source brought (``seq_score`` is 0 there); NaN without relations."""
    state, index = world()
    ids = [f"i{j}" for j in range(200)]
    nb = ItemNeighbours.fit([np.array([0, j]) for j in range(1, 200)], ids)
    pipe = Pipeline(Settings(), state, ModelSlot(ModelSet(index=index, user_tower=Tower(), neighbours=nb)),
                    reader=state)
    inputs = pipe.rank_inputs("u", NOW)
    recent = state.user("u").recent
    for relation in ("seq", "cf"):
        col = inputs.matrix[:, FEATURES.index(f"{relation}_all_score")]
        np.testing.assert_array_equal(col, nb.scores(relation, recent, inputs.item_ids))
    seq_all = inputs.matrix[:, FEATURES.index("seq_all_score")]
    seq_own = inputs.matrix[:, FEATURES.index("seq_score")]
    assert ((seq_all > 0) & (seq_own == 0)).any()
    without = Pipeline(Settings(), state, ModelSlot(ModelSet(index=index, user_tower=Tower())),
                       reader=state).rank_inputs("u", NOW)
    assert np.isnan(without.matrix[:, FEATURES.index("seq_all_score")]).all()


def test_a_feed_computes_each_relation_row_once(monkeypatch: pytest.MonkeyPatch):
    """Retrieval's ``seq`` and ``cf`` sources and the features' scores of every candidate share the
    user's rows through the request's memo: one row per relation per request, the same features."""
    state, index = world()
    nb = ItemNeighbours.fit([np.array([0, j]) for j in range(1, 200)], [f"i{j}" for j in range(200)])
    pipe = Pipeline(Settings(), state, ModelSlot(ModelSet(index=index, user_tower=Tower(), neighbours=nb)),
                    reader=state)
    calls: list[str] = []
    row = nb._row
    monkeypatch.setattr(nb, "_row", lambda relation, codes: calls.append(relation) or row(relation, codes))
    inputs = pipe.rank_inputs("u", NOW)
    assert sorted(calls) == ["cf", "seq"]
    assert inputs.cands.raw["seq"]  # the source ran, and the features' scores reused its row
    recent = state.user("u").recent
    for relation in ("seq", "cf"):
        np.testing.assert_array_equal(inputs.matrix[:, FEATURES.index(f"{relation}_all_score")],
                                      nb.scores(relation, recent, inputs.item_ids))
