"""Adapter between the lifecycle jobs and ``models.ranker*``: labelled impressions from the event log,
point-in-time features from Feast's offline store (the archive replayed by feature_store.offline,
joined by ``get_historical_features``),
fit the multi-task ranker, and score it on the time holdout (click AUC).

Labels: an impression is ``click`` = 1 when the same user clicked the same item within
``LABEL_WINDOW_S`` after it (same feed when attributed), ``deep`` = 1 for a like/purchase/share or a
long dwell. Features are looked up as of the impression time: never a value stamped after it.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.stats import rankdata

from core import features as names
from core.events import LONG_DWELL_SECONDS
from core.settings import Settings
from feature_store import transforms as tf
from feature_store.archive import ParquetArchive
from feature_store.config import offline_dir
from feature_store.offline import build_offline
from feature_store.repository import apply
from models.ranker import RankerConfig
from models.ranker_serving import RankerServing, featurize
from models.ranker_train import RankerTrainConfig, RankingData, train_ranker

log = logging.getLogger(__name__)
LABEL_WINDOW_S = 300.0
DENSE = ("lifetime_events", "lifetime_positives", "history_len", "impressions_1h", "clicks_1h", "ctr_1h",
         "impressions_24h", "clicks_24h", "ctr_24h", "item_age_s", "text_len")
SPARSE = ("segment",)
DEEP_TYPES = ("like", "purchase", "share")
FEATURE_REFS = [v.ref(f) for v in names.ALL_VIEWS for f in v.fields if f in (*DENSE, *SPARSE)]


@dataclass(frozen=True)
class RankerOptions:
    epochs: int = 5
    max_rows: int = 50_000
    batch_rows: int = 1024
    seed: int = 0


def _first_after(imps: pd.DataFrame, acts: pd.DataFrame) -> npt.NDArray[np.float32]:
    """1.0 where the same (user, item[, feed]) has an action within LABEL_WINDOW_S after the impression."""
    if acts.empty or imps.empty:
        return np.zeros(len(imps), np.float32)
    keys = ["user_id", "item_id"]
    left = imps[[*keys, "timestamp"]].reset_index().sort_values("timestamp")
    right = acts[[*keys, "timestamp"]].rename(columns={"timestamp": "act_ts"}).sort_values("act_ts")
    hit = pd.merge_asof(left, right, left_on="timestamp", right_on="act_ts", by=keys, direction="forward",
                        tolerance=LABEL_WINDOW_S)
    out = pd.Series(hit["act_ts"].notna().to_numpy(np.float32), index=hit["index"])
    return out.reindex(imps.index, fill_value=0.0).to_numpy(np.float32)


def impression_labels(events: pd.DataFrame, max_rows: int, since: float = -np.inf,
                      before: float = np.inf) -> pd.DataFrame:
    """One row per impression shown in [since, before): user_id, item_id, event_timestamp, click, deep
    (the newest max_rows). Clicks and deep actions are looked up in all of ``events``."""
    ts = events["timestamp"]
    shown = (events["type"] == "impression") & (ts >= since) & (ts < before)
    imps = events[shown].tail(max_rows).reset_index(drop=True)
    clicks = events[events["type"] == "click"]
    deep = events[events["type"].isin(DEEP_TYPES) | ((events["type"] == "dwell")
                                                     & (events["value"] >= LONG_DWELL_SECONDS))]
    return pd.DataFrame({"user_id": imps["user_id"], "item_id": imps["item_id"],
                         names.EVENT_TIMESTAMP: imps["timestamp"], "click": _first_after(imps, clicks),
                         "deep": _first_after(imps, deep)})


def point_in_time(settings: Settings, archive: ParquetArchive, labels: pd.DataFrame) -> pd.DataFrame:
    """Feast historical features (ranking service) for the labelled impressions, as of each one."""
    started = time.monotonic()
    store = apply(settings)
    build_offline(archive, offline_dir(settings), tf.TransformParams.from_settings(settings))
    log.info("offline feature rows rebuilt from the archive in %.1fs", time.monotonic() - started)
    when = pd.to_datetime(labels[names.EVENT_TIMESTAMP], unit="s", utc=True)
    entity_df = labels.assign(**{names.EVENT_TIMESTAMP: when})
    # Only the scalar fields the ranker reads: Feast's dask join is far slower with list columns.
    job = store.get_historical_features(entity_df=entity_df, features=FEATURE_REFS)
    return job.to_df().sort_values(names.EVENT_TIMESTAMP, kind="stable")


def _rows(df: pd.DataFrame) -> list[dict[str, object]]:
    cols = [c for c in (*DENSE, *SPARSE) if c in df.columns]
    return df[cols].to_dict("records")


def fit_ranker(train: pd.DataFrame, opts: RankerOptions) -> RankerServing:
    cfg = RankerConfig(dense_features=DENSE, sparse_features=SPARSE)
    labels = {h: train[h].to_numpy(np.float32) for h in cfg.heads}
    data = RankingData.from_rows(_rows(train), labels, cfg)
    train_cfg = RankerTrainConfig(epochs=opts.epochs, batch_groups=opts.batch_rows, listwise=False,
                                  seed=opts.seed)
    model = train_ranker(data, cfg, train_cfg)
    return RankerServing(model)


def auc(labels: npt.NDArray[np.float32], scores: npt.NDArray[np.float32]) -> float:
    pos = labels > 0.5
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return 0.5
    ranks = rankdata(scores)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def holdout_auc(ranker: RankerServing, holdout: pd.DataFrame) -> dict[str, float]:
    dense, sparse = featurize({}, _rows(holdout), ranker.config)
    heads = ranker.score_arrays(dense, sparse)
    return {"auc.click": auc(holdout["click"].to_numpy(np.float32), heads["click"]),
            "auc.deep": auc(holdout["deep"].to_numpy(np.float32), heads["deep"]), "rows": len(holdout)}
