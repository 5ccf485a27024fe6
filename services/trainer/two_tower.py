"""Adapter between the lifecycle jobs and ``models.two_tower``: fit on an event window, score a
time holdout, and save/load the artifact (state_dict loaded with ``weights_only=True``).

The artifact format is ``models.two_tower_serving.TwoTowerServing`` (weights + item ids + manifest);
its ``meta["content"]`` records the ContentEncoder settings so the indexer embeds new items alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.content import ContentConfig, ContentEncoder
from models.two_tower import TwoTowerConfig
from models.two_tower_serving import TwoTowerServing
from models.two_tower_train import TwoTowerTrainConfig, train_two_tower
from services.trainer.data import Catalogue

F32 = npt.NDArray[np.float32]
TwoTowerBundle = TwoTowerServing
MAX_EVAL_USERS, EVAL_BATCH = 20_000, 512


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


def load_bundle(directory: Path) -> TwoTowerServing:
    """Load a two-tower artifact (checksums verified, ``weights_only=True``) - models/ owns the format."""
    return TwoTowerServing.load(directory)


def content_config(bundle: TwoTowerServing) -> dict[str, Any]:
    return dict(bundle.meta.get("content", {"use_model": True}))


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
    backend = ContentEncoder(ContentConfig(**opts.content)).backend
    meta = {"content": opts.content, "content_backend": backend}
    return TwoTowerServing(model, catalogue.item_ids, meta=meta)


def holdout_recall(bundle: TwoTowerBundle, train: pd.DataFrame, holdout: pd.DataFrame,
                   catalogue: Catalogue, content: F32, k: int) -> dict[str, float]:
    """Recall@k of each user's holdout positives, from their training history, over the catalogue
    (already-seen items excluded). Returns ``{"recall@k": .., "users": n}``."""
    organic = holdout[holdout["feed_id"].isna()] if "feed_id" in holdout else holdout
    # Clicks on feeds the active model served favour that model (it chose what was shown), so the
    # targets are the organic positives whenever there are any.
    history = user_sequences(train)
    targets = user_sequences(organic if organic["positive"].any() else holdout)
    users = [u for u in targets if u in history][:MAX_EVAL_USERS]
    if not users:
        return {f"recall@{k}": 0.0, "users": 0}
    items = bundle.item_vectors(catalogue.item_ids, content)
    col = {iid: j for j, iid in enumerate(catalogue.item_ids)}
    recalls: list[float] = []
    for start in range(0, len(users), EVAL_BATCH):  # bounded memory: [batch, n_items] scores at a time
        batch = users[start:start + EVAL_BATCH]
        scores = bundle.user_vectors([history[u] for u in batch]) @ items.T
        recalls += [_recall(scores[r], history[u], targets[u], col, k) for r, u in enumerate(batch)]
    scored = np.array(recalls)[~np.isnan(recalls)]
    return {f"recall@{k}": float(scored.mean()) if len(scored) else 0.0, "users": len(scored)}


def _recall(row: F32, seen: list[str], wanted: list[str], col: dict[str, int], k: int) -> float:
    row = row.copy()
    row[[col[i] for i in set(seen) if i in col]] = -np.inf
    top = set(np.argpartition(-row, min(k, len(row) - 1))[:k].tolist())
    goal = {col[i] for i in set(wanted) - set(seen) if i in col}
    return len(top & goal) / min(len(goal), k) if goal else float("nan")
