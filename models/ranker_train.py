"""Training task for the multi-task ranker.

Data is grouped by request: ``RankingData`` holds ``[G, K, F]`` arrays (G requests, K candidates
each, ``mask`` marks real candidates) and one ``[G, K]`` label array per head. The ``click`` head is
trained listwise (softmax over each request's candidates; requests without a click are skipped) when
``listwise`` is set, pointwise BCE otherwise; every other head uses BCE. Ungrouped rows fit as
``K = 1`` with ``listwise=False``; ``RankingData.from_rows`` builds that from feature dicts.

Entry point::

    model = train_ranker(data, RankerConfig(dense_features=(...)), RankerTrainConfig())
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from models.ranker import MultiTaskRanker, RankerConfig
from models.ranker_serving import featurize

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerTrainConfig:
    epochs: int = 15
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
    torch.manual_seed(train_cfg.seed)
    gen = torch.Generator().manual_seed(train_cfg.seed)
    model = MultiTaskRanker(cfg)
    dense = torch.from_numpy(np.ascontiguousarray(data.dense, np.float32))
    mask = torch.from_numpy(data.mask)
    model.set_normalisation(dense[mask])
    sparse = torch.from_numpy(data.sparse)
    labels = {h: torch.from_numpy(np.asarray(data.labels[h], np.float32)) for h in cfg.heads}
    task = RankingTask(model, train_cfg)
    opt = torch.optim.Adam(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    for epoch in range(train_cfg.epochs):
        model.train()
        order = torch.randperm(len(dense), generator=gen)
        for i in range(0, len(order), train_cfg.batch_groups):
            idx = order[i:i + train_cfg.batch_groups]
            opt.zero_grad()
            loss = task.loss(dense[idx], sparse[idx], {h: v[idx] for h, v in labels.items()}, mask[idx])
            loss.backward()
            opt.step()
        log.debug("ranker epoch %d loss %.4f", epoch, float(loss.detach()))
    model.eval()
    return model
