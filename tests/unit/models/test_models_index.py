import json
from pathlib import Path

import numpy as np
import pytest

from core.errors import ArtifactError
from core.protocols import VectorIndex
from models.index import ItemIndex


def _vectors(n: int, d: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_exact_search_matches_brute_force_and_protocol():
    v = _vectors(100)
    idx = ItemIndex.build([f"i{n}" for n in range(100)], v, model_version="m1")
    assert isinstance(idx, VectorIndex) and idx.index_type == "IndexFlatIP"
    ids, scores = idx.search(v[:3], 5)
    brute = np.argsort(-(v[:3] @ v.T), axis=1)[:, :5]
    assert ids == [[f"i{n}" for n in row] for row in brute]
    assert scores.shape == (3, 5) and scores[0, 0] == pytest.approx(1.0, abs=1e-5)


def test_large_catalogue_uses_hnsw():
    idx = ItemIndex.build([f"i{n}" for n in range(300)], _vectors(300), exact_threshold=100)
    assert idx.index_type == "IndexHNSWFlat"
    ids, _ = idx.search(_vectors(300)[:1], 1)
    assert ids == [["i0"]]


def test_add_without_rebuild_and_replace():
    v = _vectors(10)
    idx = ItemIndex.build([f"i{n}" for n in range(10)], v)
    idx.add(["new"], -v[:1])
    assert len(idx) == 11 and idx.search(-v[:1], 1)[0] == [["new"]]
    idx.add(["i0"], -v[:1] * 0.5 + v[1:2] * 0.0)  # i0 now points the other way
    ids, _ = idx.search(v[:1], 11)
    assert len(idx) == 11 and len(ids[0]) == 11 and ids[0].count("i0") == 1
    assert ids[0][0] != "i0"


def test_save_load_round_trip(tmp_path: Path):
    v = _vectors(20)
    idx = ItemIndex.build([f"i{n}" for n in range(20)], v, model_version="tt-7")
    manifest = idx.save(tmp_path / "idx")
    assert manifest["item_count"] == 20 and manifest["model_version"] == "tt-7"
    back = ItemIndex.load(tmp_path / "idx")
    assert back.version == idx.version and len(back) == 20
    assert back.search(v[:4], 3)[0] == idx.search(v[:4], 3)[0]


def test_truncated_or_corrupted_index_refused(tmp_path: Path):
    d = tmp_path / "idx"
    ItemIndex.build(["a", "b"], _vectors(2)).save(d)
    data = (d / "index.faiss").read_bytes()
    (d / "index.faiss").write_bytes(data[:-7])
    with pytest.raises(ArtifactError, match="truncated"):
        ItemIndex.load(d)
    (d / "index.faiss").write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    with pytest.raises(ArtifactError, match="checksum"):
        ItemIndex.load(d)


def test_missing_or_bad_manifest_refused(tmp_path: Path):
    d = tmp_path / "idx"
    ItemIndex.build(["a"], _vectors(1)).save(d)
    (d / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        ItemIndex.load(d)
    (d / "manifest.json").unlink()
    with pytest.raises(ArtifactError, match="no manifest"):
        ItemIndex.load(d)


def test_wrong_kind_refused(tmp_path: Path):
    d = tmp_path / "idx"
    ItemIndex.build(["a"], _vectors(1)).save(d)
    m = json.loads((d / "manifest.json").read_text())
    m["kind"] = "ranker"
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ArtifactError, match="kind"):
        ItemIndex.load(d)
