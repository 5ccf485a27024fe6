"""Contract tests for the artifact store (same assertions on every back-end) and the Loader."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from core.errors import ArtifactError
from core.protocols import ArtifactStore
from services.artifacts import Loader, LoadFailure, MemoryBackend, VersionedArtifactStore, open_store
from services.artifacts.manifest import Manifest


@pytest.fixture(params=["file", "memory"])
def store(request, tmp_path: Path) -> VersionedArtifactStore:
    if request.param == "file":
        return open_store(f"file://{tmp_path / 'artifacts'}")
    return VersionedArtifactStore(MemoryBackend())


def _files(tmp_path: Path, payload: str, name: str = "w.bin") -> dict[str, Path]:
    src = tmp_path / f"src-{payload}"
    src.mkdir(exist_ok=True)
    (src / name).write_text(payload * 100)
    return {name: src / name}


def _read(path: Path, manifest: Manifest) -> str:
    return (path / "w.bin").read_text()[:1]


def test_store_satisfies_protocol(store: VersionedArtifactStore) -> None:
    assert isinstance(store, ArtifactStore)


def test_publish_versions_increase_and_fetch_roundtrips(store, tmp_path: Path) -> None:
    v1 = store.publish("ranker", _files(tmp_path, "a"), {"metrics": {"auc": 0.7}})
    v2 = store.publish("ranker", _files(tmp_path, "b"), {"parent": v1})
    assert (v1, v2) == ("000001", "000002")
    assert store.latest_version("ranker") == v2 and store.latest_version("index") is None
    out = store.fetch("ranker", v1, tmp_path / "out")
    assert (out / "w.bin").read_text() == "a" * 100
    manifest = store.manifest("ranker", v2)
    assert manifest.meta == {"parent": "000001"} and len(manifest.checksum) == 64


def test_incomplete_version_without_manifest_is_ignored(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "art"))
    store.publish("index", _files(tmp_path, "a"), {})
    (tmp_path / "art" / "index" / "000002").mkdir()
    (tmp_path / "art" / "index" / "000002" / "w.bin").write_text("partial")
    assert store.latest_version("index") == "000001"
    assert store.publish("index", _files(tmp_path, "b"), {}) == "000003"


def test_fetch_refuses_corrupted_and_truncated_files(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "art"))
    v = store.publish("two_tower", _files(tmp_path, "a"), {})
    blob = tmp_path / "art" / "two_tower" / v / "w.bin"
    blob.write_text("b" * 100)
    with pytest.raises(ArtifactError, match="checksum"):
        store.fetch("two_tower", v, tmp_path / "o1")
    blob.write_text("a" * 10)
    with pytest.raises(ArtifactError, match="truncated"):
        store.fetch("two_tower", v, tmp_path / "o2")


def test_set_active_tracks_release_seq_and_rejects_unknown(store, tmp_path: Path) -> None:
    v1 = store.publish("ranker", _files(tmp_path, "a"), {})
    v2 = store.publish("ranker", _files(tmp_path, "b"), {})
    assert store.active("ranker") is None
    assert store.set_active("ranker", v2).seq == 1
    rollback = store.set_active("ranker", "1", reason="rollback")
    assert (rollback.seq, rollback.version, store.active_version("ranker")) == (2, v1, v1)
    with pytest.raises(ArtifactError):
        store.set_active("ranker", "99")


def test_s3_without_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)  # the locks install boto3 (the s3 extra): hide it
    with pytest.raises(ArtifactError, match="boto3"):
        open_store("s3://bucket/prefix")


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ArtifactError, match="scheme"):
        open_store("ftp://host/x")


def test_loader_loads_only_newer_and_follows_rollback(store, tmp_path: Path) -> None:
    loader: Loader[str] = Loader(store, "ranker", _read, tmp_path / "cache")
    assert loader.poll() is False and loader.value is None
    v1 = store.publish("ranker", _files(tmp_path, "a"), {})
    assert loader.poll() is True and loader.value == "a"  # no release yet: newest complete version
    assert loader.poll() is False
    v2 = store.publish("ranker", _files(tmp_path, "b"), {})
    store.set_active("ranker", v1)
    assert loader.poll() is False and loader.version == v1  # release points at what we hold
    store.set_active("ranker", v2)
    assert loader.poll() is True and loader.value == "b"
    store.set_active("ranker", v1, reason="rollback")
    assert loader.poll() is True and loader.value == "a"


def test_loader_keeps_last_good_on_corrupt_artifact_and_records(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "art"))
    seen: list[LoadFailure] = []
    loader: Loader[str] = Loader(store, "index", _read, tmp_path / "cache", on_failure=seen.append)
    store.set_active("index", store.publish("index", _files(tmp_path, "a"), {}))
    assert loader.poll()
    bad = store.publish("index", _files(tmp_path, "b"), {})
    (tmp_path / "art" / "index" / bad / "w.bin").write_bytes(b"b" * 7)  # truncated after publish
    store.set_active("index", bad)
    assert loader.poll() is False and loader.value == "a" and loader.version == "000001"
    assert [f.version for f in seen] == [bad] and "truncated" in seen[0].error
    assert loader.poll() is False and len(seen) == 1  # a refused release is not retried in a loop


def test_loader_keeps_last_good_when_load_function_raises(store, tmp_path: Path) -> None:
    def load(path: Path, manifest: Manifest) -> str:
        text = (path / "w.bin").read_text()
        if not text.startswith("a"):
            raise ValueError("not a model")
        return text[:1]

    loader: Loader[str] = Loader(store, "two_tower", load, tmp_path / "cache")
    store.set_active("two_tower", store.publish("two_tower", _files(tmp_path, "a"), {}))
    store.set_active("two_tower", store.publish("two_tower", _files(tmp_path, "z"), {}))
    assert loader.poll() is False and loader.value is None
    assert "not a model" in loader.failures[0].error


class _FakeS3:
    """Just enough of a boto3 S3 client to run the S3 back-end through the store contract."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, Bucket: str, Key: str, Body, IfNoneMatch: str | None = None) -> None:
        if IfNoneMatch == "*" and Key in self.objects:
            raise RuntimeError("An error occurred (PreconditionFailed)")
        self.objects[Key] = Body if isinstance(Body, bytes) else Body.read()

    def get_object(self, Bucket: str, Key: str) -> dict:
        if Key not in self.objects:
            raise RuntimeError("An error occurred (NoSuchKey)")
        data = self.objects[Key]

        class _Body:
            def read(self) -> bytes:
                return data

        return {"Body": _Body()}

    def get_paginator(self, name: str):
        objects = self.objects

        class _Pages:
            def paginate(self, Bucket: str, Prefix: str, Delimiter: str):
                keys = [k for k in objects if k.startswith(Prefix)]
                prefixes = sorted({Prefix + k[len(Prefix):].split("/")[0] + "/" for k in keys
                                   if "/" in k[len(Prefix):]})
                yield {"CommonPrefixes": [{"Prefix": p} for p in prefixes],
                       "Contents": [{"Key": k} for k in keys if "/" not in k[len(Prefix):]]}

        return _Pages()


def test_s3_backend_with_a_client_runs_the_contract(tmp_path: Path) -> None:
    from services.artifacts.s3 import S3Backend

    fake = _FakeS3()
    store = VersionedArtifactStore(S3Backend("s3://bkt/models", client=fake))
    v1 = store.publish("ranker", _files(tmp_path, "a"), {"k": 1})
    store.set_active("ranker", v1)
    assert store.latest_version("ranker") == v1 == store.active_version("ranker")
    assert "models/ranker/000001/artifact.json" in fake.objects
    assert json.loads(fake.objects["models/ranker/000001/artifact.json"])["meta"] == {"k": 1}
    out = store.fetch("ranker", v1, tmp_path / "o")
    assert (out / "w.bin").read_text() == "a" * 100
