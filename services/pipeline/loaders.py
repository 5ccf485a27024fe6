"""Artifact kind -> serving object, for the LIFECYCLE ``Loader`` (``load(path, manifest)``).

The objects come from MODELS' serving wrappers; the two-tower one is adapted to the pipeline's
``UserTower`` seam (one query vector from the user's recent items).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from core.protocols import Features
from core.settings import Settings
from services.pipeline.modelset import F32


class TwoTowerQuery:
    """``UserTower`` over ``models.two_tower_serving.TwoTowerServing``."""

    def __init__(self, serving: Any) -> None:
        self.serving = serving
        self.version: str = serving.version

    def user_vector(self, user: Features) -> F32 | None:
        recent = [i for i in user.get("recent_items") or [] if i in self.serving.codes]
        if not recent:
            return None
        vec = self.serving.user_vectors([list(reversed(recent))])[0]
        return np.asarray(vec, np.float32)


def load_functions(settings: Settings) -> dict[str, Callable[[Path, Any], Any]]:
    from models.index import ItemIndex
    from models.ranker_serving import RankerServing
    from models.two_tower_serving import TwoTowerServing

    weights = dict(settings.ranking.head_weights)
    return {
        "ranker": lambda path, manifest: RankerServing.load(path, weights),
        "index": lambda path, manifest: ItemIndex.load(path),
        "two_tower": lambda path, manifest: TwoTowerQuery(TwoTowerServing.load(path)),
    }
