"""Off-policy evaluation on a log in the Open Bandit Pipeline layout, so teams can bring logs from
elsewhere: a CSV with ``timestamp, item_id, position, click, propensity_score`` (or ``action_prob``)
plus context columns (``user_feature_*``, ``user-item_affinity_<item>``), one row per shown slot, the
first column an index (as OBP's own files). Positions are ranked densely from 0.

Each row is a round of one slot (OBP's convention: the position is part of the context). Candidate
policies (``[obp]`` in the policy file): ``uniform`` over the items seen in the log; ``affinity``, the
item with the highest ``user-item_affinity_<item>`` of the row (deterministic); ``items``, a fixed
distribution ``weights = {item_id = probability}``. The reward model is the position-based click
model on [item one-hot, user-feature dummies, the row's affinity for the item], cross-fitted on two
folds; IPS, SNIPS and DR are per slot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import expit

from models.click_model import PositionBasedModel
from models.ope import estimate_all, per_slot_terms
from services.experiments.analysis import finite

F64 = npt.NDArray[np.float64]
REQUIRED = ("timestamp", "item_id", "position", "click")
AFFINITY = "user-item_affinity_"


class ObpPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["uniform", "affinity", "items"] = "uniform"
    weights: dict[str, float] = Field(default_factory=dict, description="kind items: item_id -> probability")


def load_obp(path: Path) -> pd.DataFrame:
    """The CSV sorted by time, ``position`` ranked 0.., ``pscore`` the logging propensity; ValueError
    naming a missing column."""
    df = pd.read_csv(path, index_col=0)
    pscore = "propensity_score" if "propensity_score" in df else "action_prob"
    missing = [c for c in (*REQUIRED, pscore) if c not in df]
    if missing:
        raise ValueError(f"{path} is not an Open Bandit Pipeline log: missing columns {missing}")
    df = df.sort_values("timestamp", kind="stable").reset_index(drop=True)
    df["position"] = pd.Series(df["position"]).rank(method="dense").astype(int) - 1
    return df.rename(columns={pscore: "pscore"})


def _items(df: pd.DataFrame) -> list[Any]:
    return sorted(df["item_id"].unique().tolist())


def target_probs(df: pd.DataFrame, policy: ObpPolicy) -> F64:
    """``out[r, j]``: the candidate's probability of item ``j`` (of :func:`_items`) in row ``r``."""
    items = _items(df)
    if policy.kind == "uniform":
        return np.full((len(df), len(items)), 1.0 / len(items))
    if policy.kind == "items":
        w = np.array([policy.weights.get(str(i), 0.0) for i in items])
        if w.sum() <= 0:
            raise ValueError("policy kind 'items' gives no weight to any item of the log")
        return np.tile(w / w.sum(), (len(df), 1))
    aff = _affinity(df, items)
    out = np.zeros_like(aff)
    out[np.arange(len(df)), aff.argmax(axis=1)] = 1.0
    return out


def _affinity(df: pd.DataFrame, items: list[Any]) -> F64:
    cols = [f"{AFFINITY}{i}" for i in items]
    if any(c not in df for c in cols):
        return np.zeros((len(df), len(items)))
    return df[cols].to_numpy(np.float64)


def _user_features(df: pd.DataFrame) -> F64:
    cols = [c for c in df.columns if c.startswith("user_feature")]
    if not cols:
        return np.zeros((len(df), 0))
    return pd.get_dummies(df[cols].astype(str), drop_first=True).to_numpy(np.float64)


def _relevance(model: PositionBasedModel, users: F64, aff: F64, n_items: int) -> F64:
    """Relevance of every item in every row, from the model's raw weights (no per-item rows built)."""
    w, b = model.raw_linear()
    item_w, user_w, aff_w = w[:n_items], w[n_items:n_items + users.shape[1]], w[-1]
    return np.asarray(expit(b + (users @ user_w)[:, None] + item_w[None, :] + aff_w * aff), np.float64)


def evaluate_obp(path: Path, policies: dict[str, ObpPolicy], folds: int = 2) -> dict[str, Any]:
    df = load_obp(path)
    items = _items(df)
    code = {i: j for j, i in enumerate(items)}
    a = df["item_id"].map(code).to_numpy()
    users, aff = _user_features(df), _affinity(df, items)
    design = np.hstack([np.eye(len(items))[a], users, aff[np.arange(len(df)), a][:, None]])
    pos, clicks = df["position"].to_numpy(), df["click"].to_numpy(np.float64)
    n_pos = int(pos.max()) + 1
    full = PositionBasedModel().fit(design, pos, clicks, n_pos)
    fold = np.arange(len(df)) % folds
    rel = np.zeros((len(df), len(items)))
    for k in range(folds):
        m = PositionBasedModel().fit(design[fold != k], pos[fold != k], clicks[fold != k], n_pos)
        rel[fold == k] = _relevance(m, users[fold == k], aff[fold == k], len(items))
    theta = full.examination(pos)
    rows = np.arange(len(df))
    out: dict[str, Any] = {"log": {"rows": len(df), "items": len(items), "positions": n_pos,
                                   "logging_ctr": float(clicks.mean()), "source": str(path)},
                           "reward_model": {"theta": full.theta_.round(4).tolist()}, "policies": {}}
    for name, policy in policies.items():
        pi = target_probs(df, policy)
        terms = per_slot_terms(clicks[:, None], df["pscore"].to_numpy(np.float64)[:, None],
                               pi[rows, a][:, None], (theta * rel[rows, a])[:, None],
                               theta * np.sum(pi * rel, axis=1))
        per_slot = {k: v.as_dict() for k, v in estimate_all(terms).items()}
        direct = float(np.mean(theta * np.sum(pi * rel, axis=1)))
        out["policies"][name] = {"obp": policy.model_dump(),
                                 "estimates": {"per_slot": per_slot, "direct_method": direct}}
    return finite(out)
