"""Serving wrapper of the multi-task ranker (implements core.protocols.Ranker) and its artifact.

``RankerServing.score(user, items)`` takes the user's feature dict and one dict per candidate (item
features plus request-time cross features such as ``two_tower_score`` or ``covisit_score``, e.g. the
feature reader's output merged with retrieval scores). A feature is looked up in the item dict first,
then the user dict; missing or non-numeric dense values count as "unknown" (the training mean).
Returns ``{head: probabilities [N]}`` for every head plus ``"score"``, the heads combined with
``head_weights`` (configurable per call site, e.g. ``settings.ranking.head_weights``).

Artifacts: ``save(dir)`` writes ``weights.pt`` (state_dict) + ``manifest.json`` (kind ``ranker``, the
config, checksums); ``RankerServing.load(dir)`` verifies the checksum, then loads with
``weights_only=True``; a bad artifact raises :class:`core.errors.ArtifactError`.

Example:
    >>> m = MultiTaskRanker(RankerConfig(dense_features=("pop",)))
    >>> s = RankerServing(m, version="v1")
    >>> sorted(s.score({}, [{"pop": 3.0}, {"pop": 1.0}]))
    ['click', 'deep', 'score']
"""

from __future__ import annotations

import logging
import math
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from core.errors import ArtifactError
from models.artifacts import load_state, new_version, save_state, verify, write_manifest
from models.ranker import MultiTaskRanker, RankerConfig, bucket

F32 = npt.NDArray[np.float32]
KIND = "ranker"
log = logging.getLogger(__name__)


def _number(value: object) -> float:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return math.nan


def trace_ranker(model: MultiTaskRanker) -> Any:
    """TorchScript trace of ``model`` (eval mode: dropout is the identity; any batch size), or the
    model itself when tracing fails."""
    cfg = model.cfg
    dense = torch.zeros((2, len(cfg.dense_features)), dtype=torch.float32)
    sparse = torch.ones((2, len(cfg.sparse_features)), dtype=torch.int64)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.jit.trace(model.eval(), (dense, sparse), strict=False, check_trace=False)
    except Exception:  # noqa: BLE001 - a model TorchScript cannot trace is served eagerly
        log.warning("ranker not traceable, scoring it eagerly", exc_info=True)
        return model


def featurize(user: Mapping[str, Any], items: Sequence[Mapping[str, Any]],
              cfg: RankerConfig) -> tuple[F32, npt.NDArray[np.int64]]:
    """Feature dicts -> dense ``[N, Fd]`` (NaN = unknown) and sparse bucket ids ``[N, Fs]``."""
    dense = np.empty((len(items), len(cfg.dense_features)), np.float32)
    sparse = np.zeros((len(items), len(cfg.sparse_features)), np.int64)
    for j, f in enumerate(cfg.dense_features):
        dense[:, j] = _column([item.get(f, user.get(f)) for item in items])
    for j, f in enumerate(cfg.sparse_features):
        default = user.get(f)
        sparse[:, j] = [bucket(item.get(f, default), cfg.sparse_buckets) for item in items]
    return dense, sparse


def _column(values: list[Any]) -> F32:
    try:  # fast path: numbers (None -> NaN)
        return np.array(values, dtype=np.float32)
    except (TypeError, ValueError):
        return np.array([_number(v) for v in values], np.float32)


class RankerServing:
    """Scores candidates for one request. Cheap: a single forward pass under inference_mode."""

    def __init__(self, model: MultiTaskRanker, version: str | None = None,
                 head_weights: Mapping[str, float] | None = None) -> None:
        self.model = model.eval()
        self.version = version or new_version()
        self.head_weights = dict(head_weights or model.cfg.head_weights)
        self._forward: Any = None  # the model traced on first use (``_traced``)
        self._lock = threading.Lock()

    @property
    def config(self) -> RankerConfig:
        return self.model.cfg

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.model.cfg.dense_features

    def score(self, user: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> dict[str, F32]:
        dense, sparse = featurize(user, items, self.config)
        return self.score_arrays(dense, sparse)

    def score_arrays(self, dense: F32, sparse: npt.NDArray[np.int64] | None = None) -> dict[str, F32]:
        """The same on ready-made arrays (``featurize`` layout); used by batch evaluation."""
        if sparse is None:
            sparse = np.zeros((len(dense), len(self.config.sparse_features)), np.int64)
        forward = self._forward or self._traced()
        with torch.inference_mode():
            logits = forward(torch.from_numpy(dense), torch.from_numpy(sparse))
        out = {h: torch.sigmoid(v).numpy().astype(np.float32) for h, v in logits.items()}
        out["score"] = self.combine(out)
        return out

    def _traced(self) -> Any:
        """The forward pass traced with TorchScript once (the same aten ops, bit-identical scores,
        without nn.Module's Python dispatch of ~15 submodules per call), or the eager model when it
        cannot be traced. Training and serving both score through here."""
        with self._lock:
            if self._forward is None:
                self._forward = trace_ranker(self.model)
            return self._forward

    def combine(self, heads: Mapping[str, F32]) -> F32:
        n = len(next(iter(heads.values()))) if heads else 0
        total = np.zeros(n, np.float32)
        for head, weight in self.head_weights.items():
            if head in heads:
                total += np.float32(weight) * heads[head]
        return total

    def save(self, directory: Path, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        directory.mkdir(parents=True, exist_ok=True)
        save_state(directory / "weights.pt", self.model.state_dict())
        return write_manifest(directory, KIND, self.version, ["weights.pt"], config=self.config.to_dict(),
                              meta=meta, model_version=self.version)

    @classmethod
    def load(cls, directory: Path, head_weights: Mapping[str, float] | None = None) -> RankerServing:
        manifest = verify(directory, KIND)
        state = load_state(manifest, directory, "weights.pt")
        try:
            model = MultiTaskRanker(RankerConfig.from_dict(manifest["config"]))
            model.load_state_dict(state)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise ArtifactError(f"{directory}: weights do not fit the config ({exc})") from None
        return cls(model, str(manifest["version"]), head_weights)
