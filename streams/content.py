"""Content vectors for new items via MODELS' ContentEncoder, as float32 bytes.

:func:`start` and :func:`encode` are what the worker's encoder child process runs (``sinks.ItemVectors``);
this module imports nothing heavy, so the child loads only the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from core.events import ItemUpsert
from models.content import ContentConfig, ContentEncoder, item_text

_ENCODER: Encoder | None = None


class Encoder:
    def __init__(self, use_model: bool) -> None:
        self._encoder = ContentEncoder(ContentConfig(use_model=use_model))

    @property
    def backend(self) -> str:
        return str(self._encoder.backend)

    def encode(self, texts: list[str], categories: list[list[str]]) -> list[bytes]:
        vecs = np.asarray(self._encoder.encode(texts, categories), np.float32)
        return [v.tobytes() for v in vecs]


def inputs(items: Sequence[ItemUpsert]) -> tuple[list[str], list[list[str]]]:
    return [item_text(it.title, it.text) for it in items], [list(it.categories) for it in items]


def start(use_model: bool) -> None:
    """Child process initializer: load the encoder once."""
    global _ENCODER
    import torch

    torch.set_num_threads(1)
    _ENCODER = Encoder(use_model)


def encode(texts: list[str], categories: list[list[str]]) -> list[bytes]:
    assert _ENCODER is not None, "start() runs first in the encoder process"
    return _ENCODER.encode(texts, categories)


def vectors(items: Sequence[ItemUpsert], use_model: bool = False) -> dict[str, bytes]:
    """In process (tests, references): the vectors the worker stores for ``items``."""
    if not items:
        return {}
    texts, cats = inputs(items)
    return {it.item_id: v for it, v in zip(items, Encoder(use_model).encode(texts, cats), strict=True)}
