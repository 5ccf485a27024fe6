"""Training task for the multi-task ranker.

Data is grouped by request: ``RankingData`` holds ``[G, K, F]`` arrays (G requests, K candidates
each, ``mask`` marks real candidates) and one ``[G, K]`` label array per head. The ``click`` head is
trained listwise (softmax over each request's candidates; requests without a click are skipped) when
``listwise`` is set, pointwise BCE otherwise; every other head uses BCE. Ungrouped rows fit as
``K = 1`` with ``listwise=False``; ``RankingData.from_rows`` builds that from feature dicts, and
``RankingData.from_requests`` builds grouped data from ``(user, items, labels)`` per request.

Entry point::

    model = train_ranker(data, RankerConfig(dense_features=(...)), RankerTrainConfig())
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from models.determinism import deterministic
from models.ranker import MultiTaskRanker, RankerConfig
from models.ranker_serving import featurize

log = logging.getLogger(__name__)
MEMBER_SEED = 1000


@dataclass(frozen=True)
class RankerTrainConfig:
    epochs: int = 30
    holdout_fraction: float = 0.2
    patience: int = 3
    batch_groups: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    listwise: bool = True
    seed: int = 0
    loss_weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0, "deep": 0.5})


@dataclass
class RankingData:
    dense: npt.NDArray[np.float32]
    sparse: npt.NDArray[np.int64]
    labels: dict[str, npt.NDArray[np.float32]]
    mask: npt.NDArray[np.bool_]

    @classmethod
    def from_rows(cls, rows: Sequence[Mapping[str, object]], labels: Mapping[str, Sequence[float]],
                  cfg: RankerConfig) -> RankingData:
        """Ungrouped rows (each a merged user+item+cross feature dict) -> ``K = 1`` data."""
        dense, sparse = featurize({}, rows, cfg)
        return cls(dense[:, None], sparse[:, None],
                   {h: np.asarray(v, np.float32)[:, None] for h, v in labels.items()},
                   np.ones((len(rows), 1), bool))


    @classmethod
    def from_requests(cls, requests: Sequence[tuple[Mapping[str, object], Sequence[Mapping[str, object]],
                                                    Mapping[str, Sequence[float]]]],
                      cfg: RankerConfig) -> RankingData:
        """Grouped data (listwise click loss) from ``(user_features, item_feature_dicts, labels)``
        per request, e.g. one served feed and what the user did with it."""
        width = max((len(items) for _, items, _ in requests), default=1)
        g, fd, fs = len(requests), len(cfg.dense_features), len(cfg.sparse_features)
        dense, sparse = np.zeros((g, width, fd), np.float32), np.zeros((g, width, fs), np.int64)
        labels = {h: np.zeros((g, width), np.float32) for h in cfg.heads}
        mask = np.zeros((g, width), bool)
        for row, (user, items, ys) in enumerate(requests):
            n = len(items)
            dense[row, :n], sparse[row, :n] = featurize(user, items, cfg)
            mask[row, :n] = True
            for h in cfg.heads:
                labels[h][row, :n] = np.asarray(ys.get(h, [0.0] * n), np.float32)
        return cls(dense, sparse, labels, mask)


class RankingTask:
    def __init__(self, model: MultiTaskRanker, cfg: RankerTrainConfig) -> None:
        self.model = model
        self.cfg = cfg

    def loss(self, dense: torch.Tensor, sparse: torch.Tensor, labels: dict[str, torch.Tensor],
             mask: torch.Tensor) -> torch.Tensor:
        g, k = mask.shape
        out = self.model(dense.view(g * k, -1), sparse.view(g * k, -1))
        total = torch.zeros(())
        for head, logits in out.items():
            y, logits = labels[head], logits.view(g, k)
            if head == "click" and self.cfg.listwise:
                part = _listwise(logits, y, mask)
            else:
                part = F.binary_cross_entropy_with_logits(logits[mask], y[mask])
            total = total + self.cfg.loss_weights.get(head, 1.0) * part
        return total


def _listwise(logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    has = (y * mask).sum(1) > 0
    if not has.any():
        return torch.zeros(())
    logp = torch.log_softmax(logits.masked_fill(~mask, -1e9), dim=1)
    per = -(logp * y * mask).sum(1) / (y * mask).sum(1).clamp(min=1)
    return per[has].mean()


def train_ranker(data: RankingData, cfg: RankerConfig, train_cfg: RankerTrainConfig) -> MultiTaskRanker:
    """Seeded training; with ``holdout_fraction`` > 0 a share of the requests is held out and the
    epoch with the lowest held-out loss is kept (early stopping, ``patience`` epochs). With
    ``cfg.members`` > 1 each member is fitted so, member ``m`` with seed ``seed + MEMBER_SEED * m``
    (its own initialisation, order and holdout; member 0 is the one-member ranker of ``seed``)."""
    if cfg.members > 1:
        return _ensemble(data, cfg, train_cfg)
    torch.manual_seed(train_cfg.seed)
    gen = torch.Generator().manual_seed(train_cfg.seed)
    model = MultiTaskRanker(cfg)
    t = _tensors(data, cfg)
    model.set_normalisation(t["dense"][t["mask"]])
    order = torch.randperm(len(t["dense"]), generator=gen)
    n_hold = int(len(order) * train_cfg.holdout_fraction) if len(order) >= 10 else 0
    hold, fit = order[:n_hold], order[n_hold:]
    task = RankingTask(model, train_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    with deterministic():
        best_state = _fit(task, opt, t, fit, hold, train_cfg, gen)
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval()


def _ensemble(data: RankingData, cfg: RankerConfig, train_cfg: RankerTrainConfig) -> MultiTaskRanker:
    one = replace(cfg, members=1)
    model = MultiTaskRanker(cfg)
    for m, member in enumerate(model.members):
        fitted = train_ranker(data, one, replace(train_cfg, seed=train_cfg.seed + MEMBER_SEED * m))
        member.load_state_dict(fitted.state_dict())
    return model.eval()


def _fit(task: RankingTask, opt: torch.optim.Optimizer, t: dict[str, Any], fit: torch.Tensor,
         hold: torch.Tensor, cfg: RankerTrainConfig, gen: torch.Generator) -> dict[str, Any] | None:
    """The epochs; the state of the epoch with the lowest held-out loss (None without a holdout)."""
    best, best_state, bad = float("inf"), None, 0
    for epoch in range(cfg.epochs):
        _epoch(task, opt, t, fit[torch.randperm(len(fit), generator=gen)], cfg.batch_groups)
        if not len(hold):
            continue
        held = _held_out_loss(task, t, hold)
        log.debug("ranker epoch %d held-out loss %.4f", epoch, held)
        if held < best:
            best, bad, best_state = held, 0, {k: v.clone() for k, v in task.model.state_dict().items()}
        elif (bad := bad + 1) >= cfg.patience:
            break
    return best_state


def _tensors(data: RankingData, cfg: RankerConfig) -> dict[str, Any]:
    return {"dense": torch.from_numpy(np.ascontiguousarray(data.dense, np.float32)),
            "sparse": torch.from_numpy(np.ascontiguousarray(data.sparse, np.int64)),
            "mask": torch.from_numpy(np.ascontiguousarray(data.mask, bool)),
            "labels": {h: torch.from_numpy(np.asarray(data.labels[h], np.float32)) for h in cfg.heads}}


def _batch(t: dict[str, Any], idx: torch.Tensor) -> tuple[Any, ...]:
    return t["dense"][idx], t["sparse"][idx], {h: v[idx] for h, v in t["labels"].items()}, t["mask"][idx]


def _epoch(task: RankingTask, opt: torch.optim.Optimizer, t: dict[str, Any], order: torch.Tensor,
           batch: int) -> None:
    task.model.train()
    for i in range(0, len(order), batch):
        opt.zero_grad()
        loss = task.loss(*_batch(t, order[i:i + batch]))
        loss.backward()
        opt.step()


def _held_out_loss(task: RankingTask, t: dict[str, Any], idx: torch.Tensor) -> float:
    task.model.eval()
    with torch.no_grad():
        return float(task.loss(*_batch(t, idx)))
