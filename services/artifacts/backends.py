"""Blob back-ends under the versioned store. Keys are ``/``-separated relative paths.

``LocalBackend`` writes atomically: a temp file in the same directory, fsync, rename, fsync of the
directory. ``MemoryBackend`` is the cheap in-process implementation for unit tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol


class Backend(Protocol):
    def put_file(self, key: str, src: Path) -> None: ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def create_exclusive(self, key: str, data: bytes) -> bool: ...

    def get_bytes(self, key: str) -> bytes: ...

    def get_file(self, key: str, dest: Path) -> None: ...

    def children(self, prefix: str) -> list[str]: ...

    def describe(self) -> str: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _atomic_file(dest: Path) -> Iterator[BinaryIO]:
    """A file that becomes ``dest`` only once fully written and fsynced: readers see either nothing
    or the whole file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(dest.parent)


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` atomically."""
    with _atomic_file(dest) as out, src.open("rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)


def atomic_write(dest: Path, data: bytes) -> None:
    with _atomic_file(dest) as out:
        out.write(data)


class LocalBackend:
    """A directory on a local or mounted file system."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"artifact key {key!r} escapes the store root")
        return path

    def put_file(self, key: str, src: Path) -> None:
        atomic_copy(src, self._path(key))

    def put_bytes(self, key: str, data: bytes) -> None:
        atomic_write(self._path(key), data)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        return True

    def get_bytes(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def get_file(self, key: str, dest: Path) -> None:
        src = self._path(key)
        if not src.is_file():
            raise FileNotFoundError(str(src))
        atomic_copy(src, dest)

    def children(self, prefix: str) -> list[str]:
        path = self._path(prefix) if prefix else self.root
        if not path.is_dir():
            return []
        return sorted(p.name for p in path.iterdir() if not p.name.startswith("."))

    def describe(self) -> str:
        return f"file://{self.root.resolve()}"


class MemoryBackend:
    """Dict-backed blobs for unit tests (same contract as the real back-ends)."""

    def __init__(self) -> None:
        self.blobs: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def put_file(self, key: str, src: Path) -> None:
        self.put_bytes(key, src.read_bytes())

    def put_bytes(self, key: str, data: bytes) -> None:
        with self._lock:
            self.blobs[key] = bytes(data)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        with self._lock:
            if key in self.blobs:
                return False
            self.blobs[key] = bytes(data)
            return True

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.blobs[key]
        except KeyError:
            raise FileNotFoundError(key) from None

    def get_file(self, key: str, dest: Path) -> None:
        atomic_write(dest, self.get_bytes(key))

    def children(self, prefix: str) -> list[str]:
        base = f"{prefix.rstrip('/')}/" if prefix else ""
        names = {k[len(base):].split("/", 1)[0] for k in self.blobs if k.startswith(base)}
        return sorted(n for n in names if n and not n.startswith("."))

    def describe(self) -> str:
        return "memory://"
