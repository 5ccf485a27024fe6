"""Adapter between the lifecycle jobs and ``models.two_tower``: fit on an event window, score a
time holdout, and save/load the artifact (state_dict loaded with ``weights_only=True``).

Artifact files: ``model.pt`` (state_dict) and ``bundle.json`` (network config, item-id vocabulary,
content encoder settings). Item code ``j + 1`` is ``item_ids[j]``; code 0 = padding / unknown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch

from models.content import ContentConfig, ContentEncoder
from models.two_tower import TwoTowerConfig, TwoTowerModel
from models.two_tower_train import TwoTowerTrainConfig, pad_histories, train_two_tower
from services.trainer.data import Catalogue

F32 = npt.NDArray[np.float32]
MODEL_FILE, BUNDLE_FILE = "model.pt", "bundle.json"


@dataclass(frozen=True)
class TwoTowerOptions:
    """Knobs of one fit (production defaults; tests shrink them)."""

    dim: int = 64
    max_len: int = 50
    n_layers: int = 2
    n_heads: int = 2
    epochs: int = 3
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0
    max_seconds: float = 480.0
    content: dict[str, Any] = field(default_factory=lambda: {"use_model": True})


class TwoTowerBundle:
    """A trained two-tower model plus its item vocabulary: user and item vectors by string id."""

    def __init__(self, model: TwoTowerModel, item_ids: list[str], content_cfg: dict[str, Any]) -> None:
        self.model = model.eval()
        self.item_ids = list(item_ids)
        self.content_cfg = dict(content_cfg)
        self._code = {iid: j + 1 for j, iid in enumerate(self.item_ids)}

    def codes(self, item_ids: Sequence[str]) -> npt.NDArray[np.int64]:
        return np.array([self._code.get(i, 0) for i in item_ids], dtype=np.int64)

    @torch.no_grad()
    def user_vectors(self, histories: Sequence[Sequence[str]]) -> F32:
        """Recent positive item ids per user (oldest first) -> ``[B, dim]`` unit vectors."""
        hist = [self.codes(h)[self.codes(h) > 0] - 1 for h in histories]
        padded = pad_histories(hist, self.model.cfg.max_len)
        return self.model.user_vectors(padded).numpy().astype(np.float32)

    @torch.no_grad()
    def item_vectors(self, item_ids: Sequence[str], content: F32 | None = None) -> F32:
        """``[n, dim]``; items outside the vocabulary use ``content`` rows (aligned) or stay zero."""
        codes = self.codes(item_ids)
        out = self.model.item_vectors(torch.from_numpy(codes)).numpy().astype(np.float32)
        unknown = codes == 0
        if unknown.any():
            out[unknown] = 0.0
            if content is not None and self.model.cfg.content_dim:
                rows = torch.from_numpy(np.asarray(content, np.float32)[unknown])
                out[unknown] = self.model.item_vectors_from_content(rows).numpy()
        return out

    def save(self, directory: Path) -> dict[str, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), directory / MODEL_FILE)
        meta = {"config": self.model.cfg.to_dict(), "item_ids": self.item_ids, "content": self.content_cfg}
        (directory / BUNDLE_FILE).write_text(json.dumps(meta))
        return {MODEL_FILE: directory / MODEL_FILE, BUNDLE_FILE: directory / BUNDLE_FILE}

    @classmethod
    def load(cls, directory: Path) -> TwoTowerBundle:
        meta = json.loads((directory / BUNDLE_FILE).read_text())
        cfg = TwoTowerConfig(**meta["config"])
        model = TwoTowerModel(cfg)
        state = torch.load(directory / MODEL_FILE, map_location="cpu", weights_only=True)
        model.items.content = torch.zeros_like(state["items.content"])
        model.load_state_dict(state)
        return cls(model, meta["item_ids"], meta["content"])


def encode_content(catalogue: Catalogue, content_cfg: dict[str, Any]) -> F32:
    encoder = ContentEncoder(ContentConfig(**content_cfg))
    return encoder.encode(catalogue.texts, catalogue.categories)


def user_sequences(events: pd.DataFrame) -> dict[str, list[str]]:
    """Positive item ids per user in time order."""
    pos = events[events["positive"]].sort_values(["timestamp", "event_id"], kind="stable")
    return {str(u): list(g) for u, g in pos.groupby("user_id", sort=True)["item_id"]}


def fit_two_tower(train: pd.DataFrame, catalogue: Catalogue, content: F32,
                  opts: TwoTowerOptions) -> TwoTowerBundle:
    vocab = {iid: j for j, iid in enumerate(catalogue.item_ids)}
    seqs = [np.array([vocab[i] for i in items if i in vocab], dtype=np.int64)
            for items in user_sequences(train).values()]
    seqs = [s for s in seqs if len(s) >= 2]
    cfg = TwoTowerConfig(n_items=len(catalogue), content_dim=int(content.shape[1]), dim=opts.dim,
                         max_len=opts.max_len, n_layers=opts.n_layers, n_heads=opts.n_heads)
    train_cfg = TwoTowerTrainConfig(epochs=opts.epochs, batch_size=opts.batch_size, lr=opts.lr,
                                    seed=opts.seed, max_seconds=opts.max_seconds)
    model = train_two_tower(seqs, len(catalogue), content, cfg, train_cfg)
    return TwoTowerBundle(model, catalogue.item_ids, opts.content)


def holdout_recall(bundle: TwoTowerBundle, train: pd.DataFrame, holdout: pd.DataFrame,
                   catalogue: Catalogue, content: F32, k: int) -> dict[str, float]:
    """Recall@k of each user's holdout positives, from their training history, over the catalogue
    (already-seen items excluded). Returns ``{"recall@k": .., "users": n}``."""
    history, targets = user_sequences(train), user_sequences(holdout)
    users = [u for u in targets if u in history]
    if not users:
        return {f"recall@{k}": 0.0, "users": 0}
    uvec = bundle.user_vectors([history[u] for u in users])
    scores = uvec @ bundle.item_vectors(catalogue.item_ids, content).T
    col = {iid: j for j, iid in enumerate(catalogue.item_ids)}
    recalls = np.array([_recall(scores[r], history[u], targets[u], col, k) for r, u in enumerate(users)])
    scored = recalls[~np.isnan(recalls)]
    return {f"recall@{k}": float(scored.mean()) if len(scored) else 0.0, "users": len(scored)}


def _recall(row: F32, seen: list[str], wanted: list[str], col: dict[str, int], k: int) -> float:
    row = row.copy()
    row[[col[i] for i in set(seen) if i in col]] = -np.inf
    top = set(np.argpartition(-row, min(k, len(row) - 1))[:k].tolist())
    goal = {col[i] for i in set(wanted) - set(seen) if i in col}
    return len(top & goal) / min(len(goal), k) if goal else float("nan")
