"""Two-tower retrieval network (the ``nn.Module`` only: tensors in, tensors out).

Item codes are ``1..n_items``; ``0`` is padding / "unknown item".

- Item tower: ``id_embedding[code] * seen[code] + content_proj(content[code])``, L2-normalised.
  ``content`` is a fixed buffer of content vectors (``models.content.ContentEncoder``: text +
  categories); ``seen`` is 0 for items without training interactions, so a brand-new item is placed by
  its content alone (``item_vectors_from_content``). Training drops the ID part at random
  (``id_dropout``) so the content path learns to stand on its own.
- User tower: a causal transformer over the recent history (item-tower inputs + recency-position
  embeddings, newest item = position 0), plus optional dense ``profile`` and ``context`` vectors,
  projected to ``dim`` and L2-normalised. ``forward`` returns a vector for every history position
  (training predicts each next item); ``user_vectors`` returns the last one.

Shapes: history ``[B, L]`` long (left padded), profile ``[B, profile_dim]``, context
``[B, context_dim]``; outputs ``[B, L, dim]`` / ``[B, dim]``; items ``[N] -> [N, dim]``.

Example:
    >>> import torch
    >>> m = TwoTowerModel(TwoTowerConfig(n_items=10, content_dim=4), torch.zeros(11, 4))
    >>> m.user_vectors(torch.tensor([[0, 3, 5]])).shape
    torch.Size([1, 64])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class TwoTowerConfig:
    """Hyperparameters of the network (training knobs live in ``TwoTowerTrainConfig``)."""

    n_items: int
    content_dim: int = 0
    dim: int = 64
    max_len: int = 50
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    id_dropout: float = 0.2
    profile_dim: int = 0
    context_dim: int = 0
    temperature: float = 0.07

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ItemTower(nn.Module):
    def __init__(self, cfg: TwoTowerConfig, content: torch.Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.id_embedding = nn.Embedding(cfg.n_items + 1, cfg.dim, padding_idx=0)
        nn.init.normal_(self.id_embedding.weight, std=0.02)
        self.content: torch.Tensor
        self.seen: torch.Tensor
        self.register_buffer("content", content.float())
        self.register_buffer("seen", torch.zeros(cfg.n_items + 1))
        width = max(cfg.content_dim, 1)
        self.content_proj = nn.Sequential(nn.Linear(width, cfg.dim), nn.GELU(), nn.Linear(cfg.dim, cfg.dim))

    def raw(self, codes: torch.Tensor) -> torch.Tensor:
        """Un-normalised item embeddings ``[..., dim]`` (inputs of the user tower)."""
        keep = self.seen[codes].unsqueeze(-1)
        if self.training and self.cfg.id_dropout > 0:
            keep = keep * (torch.rand_like(keep) >= self.cfg.id_dropout).float()
        return self.id_embedding(codes) * keep + self.from_content(self.content[codes])

    def from_content(self, content: torch.Tensor) -> torch.Tensor:
        if self.cfg.content_dim == 0:
            return torch.zeros(*content.shape[:-1], self.cfg.dim, device=content.device)
        return self.content_proj(content)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.raw(codes), dim=-1)


class UserTower(nn.Module):
    def __init__(self, cfg: TwoTowerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.position = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.n_heads, cfg.dim * 2, cfg.dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.drop = nn.Dropout(cfg.dropout)
        self.out = nn.Linear(cfg.dim + cfg.profile_dim + cfg.context_dim, cfg.dim)

    def forward(self, seq_emb: torch.Tensor, pad: torch.Tensor, profile: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """seq_emb [B, L, dim], pad [B, L] bool -> normalised [B, L, dim]."""
        length = seq_emb.shape[1]
        recency = torch.arange(length - 1, -1, -1, device=seq_emb.device).clamp(max=self.cfg.max_len - 1)
        x = self.drop(seq_emb + self.position(recency)) * (~pad).unsqueeze(-1)
        h = self.norm(self.encoder(x, mask=_attention_mask(pad, self.cfg.n_heads)))
        extras = [t.unsqueeze(1).expand(-1, length, -1) for t in (profile, context) if t is not None]
        return F.normalize(self.out(torch.cat([h, *extras], dim=-1)), dim=-1)


def _attention_mask(pad: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Causal, padding keys hidden, every position may see itself (no all-masked rows)."""
    length = pad.shape[1]
    future = torch.triu(torch.ones(length, length, dtype=torch.bool, device=pad.device), diagonal=1)
    hidden = future.unsqueeze(0) | pad.unsqueeze(1)
    hidden = hidden & ~torch.eye(length, dtype=torch.bool, device=pad.device).unsqueeze(0)
    mask = torch.zeros(hidden.shape, device=pad.device).masked_fill(hidden, float("-inf"))
    return mask.repeat_interleave(n_heads, dim=0)


class TwoTowerModel(nn.Module):
    """Args: cfg; content ``[n_items + 1, content_dim]`` (row 0 = padding, zeros)."""

    def __init__(self, cfg: TwoTowerConfig, content: torch.Tensor | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        if content is None:
            content = torch.zeros(cfg.n_items + 1, max(cfg.content_dim, 1))
        self.items = ItemTower(cfg, content)
        self.users = UserTower(cfg)

    def forward(self, history: torch.Tensor, profile: torch.Tensor | None = None,
                context: torch.Tensor | None = None) -> torch.Tensor:
        """history [B, L] codes -> user vectors at every position [B, L, dim]."""
        return self.users(self.items.raw(history), history == 0, profile, context)

    def user_vectors(self, history: torch.Tensor, profile: torch.Tensor | None = None,
                     context: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward(history[:, -self.cfg.max_len:], profile, context)[:, -1]

    def item_vectors(self, codes: torch.Tensor) -> torch.Tensor:
        return self.items(codes)

    def item_vectors_from_content(self, content: torch.Tensor) -> torch.Tensor:
        """Vectors for items the model has never seen: content features only."""
        return F.normalize(self.items.from_content(content), dim=-1)
