"""Two-tower artifacts for the lifecycle jobs (the indexer, drift): load one, embed a catalogue as its
training did, and the users' positive sequences. Fitting lives in ``funnel.train_two_tower``.

The artifact format is ``models.two_tower_serving.TwoTowerServing`` (weights + item ids + manifest);
its ``meta["content"]`` records the ContentEncoder settings so the indexer embeds new items alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.content import ContentConfig, ContentEncoder
from models.two_tower_serving import TwoTowerServing
from services.trainer.data import Catalogue

F32 = npt.NDArray[np.float32]
TwoTowerBundle = TwoTowerServing


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
