"""Content vectors for new items via MODELS' ContentEncoder (loaded once, off the event loop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from core.events import ItemUpsert
from models.content import ContentConfig, ContentEncoder, item_text

log = logging.getLogger(__name__)


class ItemVectors:
    """Encodes item text + categories into float32 bytes keyed by item_id."""

    def __init__(self, use_model: bool = True) -> None:
        self._encoder = ContentEncoder(ContentConfig(use_model=use_model))

    @property
    def backend(self) -> str:
        return str(self._encoder.backend)

    def encode(self, items: Sequence[ItemUpsert]) -> dict[str, bytes]:
        if not items:
            return {}
        texts = [item_text(it.title, it.text) for it in items]
        vecs = np.asarray(self._encoder.encode(texts, [list(it.categories) for it in items]), np.float32)
        return {it.item_id: vecs[n].tobytes() for n, it in enumerate(items)}

    async def encode_async(self, items: Sequence[ItemUpsert]) -> dict[str, bytes]:
        return await asyncio.to_thread(self.encode, items)
