"""Artifact kind -> serving object, for the LIFECYCLE ``Loader`` (``load(path, manifest)``).

The objects come from MODELS' serving wrappers: the ranker (``RankerServing``, a
``core.protocols.FeatureRanker`` over the funnel's named feature columns), the ANN index, and the
two-tower adapted to the funnel's ``UserTower`` seam (``funnel.modelset.TwoTowerQuery``), and the
learned item-to-item relations (``ItemNeighbours``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from core.settings import Settings
from funnel.modelset import TwoTowerQuery


def load_functions(settings: Settings) -> dict[str, Callable[[Path, Any], Any]]:
    from models.index import ItemIndex
    from models.item_neighbours import ItemNeighbours
    from models.ranker_serving import RankerServing
    from models.two_tower_serving import TwoTowerServing

    weights = dict(settings.ranking.head_weights)
    return {
        "ranker": lambda path, manifest: RankerServing.load(path, weights),
        "index": lambda path, manifest: ItemIndex.load(path),
        "two_tower": lambda path, manifest: TwoTowerQuery(TwoTowerServing.load(path)),
        "i2i": lambda path, manifest: ItemNeighbours.load(path),
    }
