"""The ranking half of the training job: label groups with point-in-time features, and the ranker.

The log is replayed into the in-process store; at each label point the funnel computes candidates and
features exactly as a feed request at that moment would (``Pipeline.rank_inputs``). Organic points keep
the labelled item plus up to ``max_negatives`` sampled candidates; served feeds keep their shown items.
The click head trains listwise (softmax over the group), the deep head pointwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.online import F32
from core.settings import Settings
from funnel.features import FEATURES
from funnel.labels import FeedGroup, Labels
from funnel.log import Catalog, EventLog
from funnel.modelset import ModelSet, ModelSlot, one_thread
from funnel.pipeline import Pipeline
from funnel.replay import Replay, Store
from funnel.scoring import HEURISTIC, select
from models.ranker import RankerConfig
from models.ranker_serving import RankerServing
from models.ranker_train import RankerTrainConfig, RankingData, train_ranker


@dataclass
class Group:
    ts: float
    kind: str
    matrix: F32
    click: F32
    deep: F32


@dataclass
class Groups:
    groups: list[Group] = field(default_factory=list)
    organic_points: int = 0
    organic_missed: int = 0  # organic points whose labelled item was not among the candidates

    def data(self, idx: npt.NDArray[np.int64] | None = None) -> RankingData:
        chosen = self.groups if idx is None else [self.groups[int(i)] for i in idx]
        width = max((len(g.click) for g in chosen), default=1)
        n = len(chosen)
        dense = np.zeros((n, width, len(FEATURES)), np.float32)
        labels = {"click": np.zeros((n, width), np.float32), "deep": np.zeros((n, width), np.float32)}
        mask = np.zeros((n, width), bool)
        for r, g in enumerate(chosen):
            k = len(g.click)
            dense[r, :k], labels["click"][r, :k], labels["deep"][r, :k], mask[r, :k] = \
                g.matrix, g.click, g.deep, True
        return RankingData(dense, np.zeros((n, width, 0), np.int64), labels, mask)

    @property
    def candidate_recall(self) -> float:
        return 1.0 - self.organic_missed / self.organic_points if self.organic_points else 0.0


class GroupCollector:
    """Replays ``log`` into ``store`` and builds a :class:`Group` at every label point."""

    def __init__(self, settings: Settings, log: EventLog, catalog: Catalog, store: Store, models: ModelSet,
                 max_negatives: int, seed: int) -> None:
        self.log, self.catalog, self.store, self.max_negatives = log, catalog, store, max_negatives
        self.replay = Replay(log, catalog, store)
        self.pipeline = Pipeline(settings, store, ModelSlot(models), reader=store)  # type: ignore[arg-type]
        self.rng = np.random.default_rng(seed)
        self.deep = log.deep()

    def collect(self, labels: Labels) -> Groups:
        out = Groups()
        feeds: dict[int, list[FeedGroup]] = {}
        for g in labels.feeds:
            feeds.setdefault(g.first, []).append(g)
        organic = {int(i) for i in labels.organic}

        def on_stop(j: int) -> None:
            if j in organic:
                self._organic(j, out)
            for g in feeds.get(j, []):
                self._feed(g, float(self.log.ts[j]), out)

        with one_thread():
            self.replay.run(sorted(organic | set(feeds)), on_stop)
        return out

    def collect_held_out(self, labels: Labels) -> Groups:
        """Labels that are not the users' latest events (``selection="random"``): the state holds every
        other event, the labelled ones held out, and each group is ranked at the end of the log (as a
        random-split test user is served: with their whole history but the held-out item)."""
        out = Groups()
        keep = np.ones(len(self.log), bool)
        keep[labels.organic] = False
        held = Replay(self.log.subset(keep), self.catalog, self.store)
        held.advance(int(keep.sum()), until_ts=float("inf"))
        end = float(self.log.ts[-1]) if len(self.log) else 0.0
        with one_thread():
            for j in labels.organic:
                self._organic(int(j), out, at=end)
        return out

    def _organic(self, j: int, out: Groups, at: float | None = None) -> None:
        user, target = str(self.log.user[j]), str(self.log.item[j])
        ts = float(self.log.ts[j]) if at is None else at
        device = str(self.log.device[j]) or None
        out.organic_points += 1
        ri = self.pipeline.rank_inputs(user, ts, segment=device)
        if target not in ri.item_ids:
            out.organic_missed += 1
            return
        pos = ri.item_ids.index(target)
        rows = self._sample(len(ri.item_ids), pos)
        click = (rows == pos).astype(np.float32)
        out.groups.append(Group(ts, "organic", ri.matrix[rows], click, click * float(self.deep[j])))

    def _sample(self, n: int, pos: int) -> npt.NDArray[np.int64]:
        others = np.delete(np.arange(n), pos)
        if len(others) > self.max_negatives:
            others = np.sort(self.rng.choice(others, self.max_negatives, replace=False))
        return np.concatenate([[pos], others]).astype(np.int64)

    def _feed(self, g: FeedGroup, ts: float, out: Groups) -> None:
        ri = self.pipeline.rank_inputs(g.user, ts, item_ids=g.items, segment=g.device or None)
        out.groups.append(Group(ts, "feed", ri.matrix, np.array(g.click, np.float32),
                                np.array(g.deep, np.float32)))


def fit_ranker(groups: Groups, idx: npt.NDArray[np.int64] | None, cfg: RankerTrainConfig,
               head_weights: dict[str, float], members: int = 1) -> RankerServing:
    """The ranker over :data:`FEATURES`; ``members`` > 1: that many fitted apart, averaged."""
    rcfg = RankerConfig(dense_features=FEATURES, head_weights=head_weights, members=members)
    return RankerServing(train_ranker(groups.data(idx), rcfg, cfg), head_weights=head_weights)


def group_ndcg(scores: list[F32], clicks: list[F32], k: int = 10) -> float:
    """Mean NDCG@k over groups with at least one click (ties broken against the clicked items)."""
    vals = []
    for s, y in zip(scores, clicks, strict=True):
        if y.sum() <= 0:
            continue
        order = np.lexsort((y, -s))[:k]
        dcg = float((y[order] / np.log2(np.arange(2, len(order) + 2))).sum())
        ideal = float((np.sort(y)[::-1][:k] / np.log2(np.arange(2, min(k, len(y)) + 2))).sum())
        vals.append(dcg / ideal if ideal > 0 else 0.0)
    return float(np.mean(vals)) if vals else 0.0


def holdout_ndcg(ranker: RankerServing | None, groups: list[Group]) -> float:
    """NDCG@10 of a ranker (the heuristic when None) over held-out groups' click labels."""
    def score(m: F32) -> F32:
        if ranker is None:
            return HEURISTIC.score_arrays(m)["click"]
        return ranker.score_arrays(select(m, ranker.feature_names))["score"]

    return group_ndcg([score(g.matrix) for g in groups], [g.click for g in groups])
