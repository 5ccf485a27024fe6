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
    """Loaders run in the hot-swap thread, never on a request: everything a request would otherwise
    pay for on first use is done here (the index's vector view, the two-tower's traced user tower).
    The index and the two-tower are memory-mapped from the artifact cache, which the API's worker
    processes share (``services.artifacts.loader``): one copy of their pages per host."""
    from models.index import ItemIndex
    from models.item_neighbours import ItemNeighbours
    from models.ranker_serving import RankerServing
    from models.two_tower_serving import TwoTowerServing

    weights = dict(settings.ranking.head_weights)

    def index(path: Path, manifest: Any) -> ItemIndex:
        loaded = ItemIndex.load(path, mmap=True)
        loaded.matrix()  # the tt_score lookups' view, made now rather than by the first request
        return loaded

    return {
        "ranker": lambda path, manifest: RankerServing.load(path, weights),
        "index": index,
        "two_tower": lambda path, manifest: TwoTowerQuery(TwoTowerServing.load(path, mmap=True)),
        "i2i": lambda path, manifest: ItemNeighbours.load(path),
    }
