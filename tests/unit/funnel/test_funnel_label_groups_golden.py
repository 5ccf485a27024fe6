"""The ranker's training examples (label groups) are exactly what the training job built at 4e2b789.

The replay and the funnel's reads were made faster for ``streamrec eval``'s time goal (issue 12) on the
promise that the groups stay bit-identical. ``data/label_groups_golden.npz`` holds the groups that
4e2b789's code built from the small log below (organic positives and served feeds, co-visitation rows
over their cap, content vectors, learned item-to-item relations), for both selections; each group's
timestamp, kind, feature matrix and labels must equal it exactly (NaN where NaN).

Regenerate only on purpose, from the revision whose groups are the reference:
``PYTHONPATH=. python tests/unit/funnel/test_funnel_label_groups_golden.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.events import ItemUpsert
from core.settings import Settings
from feature_store.online.memory_state import MemoryOnline
from funnel.labels import select_labels
from funnel.log import Catalog, EventLog
from funnel.modelset import ModelSet
from funnel.train_ranker import GroupCollector, Groups
from funnel.train_two_tower import training_sequences
from models.item_neighbours import ItemNeighbours, NeighbourConfig

GOLDEN = Path(__file__).parent / "data" / "label_groups_golden.npz"
# a small co-visitation cap: the log's rows go over it, so the store's cap is exercised
SETTINGS = Settings(worker={"content_model": False, "covisit_cap": 6})
T0 = 1_700_000_000.0
N_USERS, N_ITEMS = 24, 40


def _columns(rng: np.random.Generator) -> dict[str, list[object]]:
    """Per user a walk over the catalogue with jumps; every fourth user also gets a served feed of
    five items, with a click on one slot (by feed id and position) and a like on another."""
    cols: dict[str, list[object]] = {k: [] for k in ("event_id", "user", "item", "type", "value", "ts",
                                                     "feed_id", "position")}

    def add(user: str, item: str, kind: str, ts: float, feed: str | None = None, pos: int = -1) -> None:
        for key, v in zip(cols, (f"e{len(cols['ts'])}", user, item, kind, 1.0, ts, feed, pos), strict=True):
            cols[key].append(v)

    for u in range(N_USERS):
        at = int(rng.integers(N_ITEMS))
        for t in range(int(rng.integers(8, 16))):
            at = int(rng.integers(N_ITEMS)) if rng.random() < 0.2 else (at + 1) % N_ITEMS
            add(f"u{u}", f"i{at}", "like" if rng.random() < 0.3 else "click", T0 + 900 * t + 7 * u)
        if u % 4 == 0:
            ts, feed = T0 + 900 * 17 + 7 * u, f"f{u}"
            shown = rng.choice(N_ITEMS, 5, replace=False)
            for pos, item in enumerate(shown):
                add(f"u{u}", f"i{item}", "impression", ts, feed, pos)
            add(f"u{u}", f"i{shown[1]}", "click", ts + 30, feed, 1)
            add(f"u{u}", f"i{shown[3]}", "like", ts + 60)
    return cols


def _world() -> tuple[EventLog, Catalog]:
    rng = np.random.default_rng(12)
    log = EventLog.build({k: np.asarray(v, object if k not in ("value", "ts", "position") else None)
                          for k, v in _columns(rng).items()})
    items = [ItemUpsert.model_construct(item_id=f"i{n}", title=f"item {n}", text="", categories=[f"c{n % 4}"],
                                        attributes={}, created_at=T0 - 3600 + n, active=True,
                                        timestamp=T0 - 3600 + n, schema_version=1) for n in range(N_ITEMS)]
    vectors = rng.normal(size=(N_ITEMS, 8)).astype(np.float32)
    return log, Catalog(items, vectors)


def build_groups() -> dict[str, Groups]:
    """The groups of both selections, as ``funnel.training._groups`` builds them (no two-tower)."""
    log, catalog = _world()
    out = {}
    for selection in ("last", "random"):
        labels = select_labels(log, 3, selection, 20_000, seed=5)  # type: ignore[arg-type]
        relations = ItemNeighbours.fit(training_sequences(log, catalog, labels), catalog.item_ids,
                                       NeighbourConfig())
        models = ModelSet(neighbours=relations)
        collector = GroupCollector(SETTINGS, log, catalog, MemoryOnline(SETTINGS), models, 12, seed=5)
        out[selection] = collector.collect_held_out(labels) if selection == "random" else \
            collector.collect(labels)
    return out


def _arrays(groups: dict[str, Groups]) -> dict[str, npt.NDArray[np.generic]]:
    arrays: dict[str, npt.NDArray[np.generic]] = {}
    for selection, g in groups.items():
        arrays[f"{selection}/counts"] = np.array([g.organic_points, g.organic_missed, len(g.groups)])
        arrays[f"{selection}/ts"] = np.array([x.ts for x in g.groups])
        arrays[f"{selection}/kind"] = np.array([x.kind for x in g.groups])
        arrays[f"{selection}/sizes"] = np.array([len(x.click) for x in g.groups])
        for name in ("matrix", "click", "deep"):
            arrays[f"{selection}/{name}"] = np.concatenate([getattr(x, name) for x in g.groups])
    return arrays


def test_label_groups_equal_the_reference_exactly():
    want = np.load(GOLDEN)
    got = _arrays(build_groups())
    assert sorted(got) == sorted(want.files)
    assert int(want["last/counts"][2]) > 20 and "feed" in set(want["last/kind"].tolist())
    for key in want.files:
        assert got[key].dtype == want[key].dtype, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key, strict=True)


if __name__ == "__main__":
    GOLDEN.parent.mkdir(exist_ok=True)
    np.savez_compressed(GOLDEN, **_arrays(build_groups()))  # type: ignore[arg-type]
    print(f"wrote {GOLDEN}")
