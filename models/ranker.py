"""Multi-task DCN-v2 ranker (the ``nn.Module`` only).

Inputs are named features, so the serving pipeline can feed the feature reader's output directly:
``dense_features`` (numbers: user, item and cross features such as the two-tower score or a
co-visitation score) are standardised with statistics stored in the module; ``sparse_features``
(strings) are hashed into ``sparse_buckets`` and embedded. A DCN-v2 cross network
(``x_{l+1} = x0 * (W x_l + b) + x_l``) runs beside a deep MLP; one logit per head (``heads``,
default ``click`` and ``deep`` = like or long dwell).

Shapes: dense ``[N, len(dense_features)]`` float, sparse ``[N, len(sparse_features)]`` long ->
``{head: [N] logits}``.

Example:
    >>> import torch
    >>> m = MultiTaskRanker(RankerConfig(dense_features=("a", "b")))
    >>> sorted(m(torch.zeros(3, 2), torch.zeros(3, 0, dtype=torch.long)))
    ['click', 'deep']
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from typing import Any, cast

import torch
from torch import nn


@dataclass(frozen=True)
class RankerConfig:
    dense_features: tuple[str, ...]
    sparse_features: tuple[str, ...] = ()
    sparse_buckets: int = 1024
    sparse_dim: int = 8
    cross_layers: int = 2
    hidden: tuple[int, ...] = (64, 32)
    dropout: float = 0.1
    heads: tuple[str, ...] = ("click", "deep")
    head_weights: dict[str, float] = field(default_factory=lambda: {"click": 1.0, "deep": 0.5})
    members: int = 1  # > 1: that many rankers fitted apart (own seeds and holdouts), logits averaged

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankerConfig:
        tuples = ("dense_features", "sparse_features", "hidden", "heads")
        fixed: dict[str, Any] = {k: tuple(v) if k in tuples else v for k, v in data.items()}
        return cls(**fixed)


def bucket(value: object, buckets: int) -> int:
    """Stable hash of a categorical value into ``1..buckets - 1`` (0 = missing)."""
    if value is None or value == "":
        return 0
    return _bucket(str(value), buckets)


@lru_cache(maxsize=65536)
def _bucket(value: str, buckets: int) -> int:
    digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "little") % (buckets - 1)


class CrossNetwork(nn.Module):
    def __init__(self, width: int, layers: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(layers))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class MultiTaskRanker(nn.Module):
    """One ranker, or (``cfg.members`` > 1) an ensemble of ``members`` one-member rankers whose logits
    are averaged head by head: each member trained with its own seed, the noise of one fit partly
    cancels (``models.ranker_train.train_ranker`` fits them)."""

    def __init__(self, cfg: RankerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        if cfg.members > 1:
            self.members = nn.ModuleList(MultiTaskRanker(replace(cfg, members=1)) for _ in range(cfg.members))
            return
        n_dense = len(cfg.dense_features)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(n_dense))
        self.register_buffer("std", torch.ones(n_dense))
        self.embedding = nn.Embedding(cfg.sparse_buckets, cfg.sparse_dim, padding_idx=0)
        width = n_dense + len(cfg.sparse_features) * cfg.sparse_dim
        self.cross = CrossNetwork(width, cfg.cross_layers)
        self.deep = _mlp(width, cfg.hidden, cfg.dropout)
        top = width + (cfg.hidden[-1] if cfg.hidden else width)
        self.heads = nn.ModuleDict({h: nn.Linear(top, 1) for h in cfg.heads})

    def set_normalisation(self, dense: torch.Tensor) -> None:
        """Store mean/std of the training dense features (NaN = missing, ignored)."""
        if self.cfg.members > 1:
            for member in self.members:
                cast(MultiTaskRanker, member).set_normalisation(dense)
            return
        mean = torch.nanmean(dense, dim=0)
        var = torch.nanmean((dense - mean) ** 2, dim=0)
        self.mean.copy_(torch.nan_to_num(mean))
        self.std.copy_(torch.nan_to_num(var.sqrt(), nan=1.0).clamp(min=1e-6))

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.cfg.members > 1:
            outs = [member(dense, sparse) for member in self.members]
            return {name: torch.stack([o[name] for o in outs]).mean(0) for name in self.cfg.heads}
        x = torch.nan_to_num((dense - self.mean) / self.std).clamp(-10.0, 10.0)
        if sparse.shape[1]:
            x = torch.cat([x, self.embedding(sparse).flatten(1)], dim=1)
        h = torch.cat([self.cross(x), self.deep(x)], dim=1)
        return {name: head(h).squeeze(-1) for name, head in self.heads.items()}


def _mlp(width: int, hidden: tuple[int, ...], dropout: float) -> nn.Module:
    layers: list[nn.Module] = []
    for size in hidden:
        layers += [nn.Linear(width, size), nn.ReLU(), nn.Dropout(dropout)]
        width = size
    return nn.Sequential(*layers)
