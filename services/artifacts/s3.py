"""S3-style object store back-end (AWS S3, MinIO, ...). boto3 is imported only when used.

Objects are written whole by a single PUT, so a reader never sees a partial object; the version
lock is created with a conditional PUT (``If-None-Match: *``) and the manifest is written last.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from core.errors import ArtifactError
from services.artifacts.backends import atomic_write

INSTALL_HINT = "the s3:// artifact store needs boto3: pip install 'boto3>=1.34' (or the 's3' extra)"


def _boto3_client(endpoint_url: str | None) -> Any:
    try:
        boto3 = importlib.import_module("boto3")
    except ModuleNotFoundError:
        raise ArtifactError(INSTALL_HINT) from None
    return boto3.client("s3", endpoint_url=endpoint_url)


class S3Backend:
    """``s3://bucket/prefix``. ``AWS_ENDPOINT_URL`` (or ``endpoint_url``) points at MinIO & co."""

    def __init__(self, url: str, client: Any = None, endpoint_url: str | None = None) -> None:
        parsed = urlparse(url)
        if not parsed.netloc:
            raise ArtifactError(f"artifact url {url!r} has no bucket")
        self.bucket = parsed.netloc
        self.prefix = parsed.path.strip("/")
        self.client = client or _boto3_client(endpoint_url or os.environ.get("AWS_ENDPOINT_URL"))

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_file(self, key: str, src: Path) -> None:
        with src.open("rb") as fh:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=fh)

    def put_bytes(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create_exclusive(self, key: str, data: bytes) -> bool:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except Exception as exc:  # botocore ClientError: PreconditionFailed
            if "PreconditionFailed" in str(exc) or "412" in str(exc):
                return False
            raise
        return True

    def get_bytes(self, key: str) -> bytes:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            if "NoSuchKey" in str(exc) or "404" in str(exc):
                raise FileNotFoundError(key) from None
            raise
        data: bytes = obj["Body"].read()
        return data

    def get_file(self, key: str, dest: Path) -> None:
        atomic_write(dest, self.get_bytes(key))

    def children(self, prefix: str) -> list[str]:
        base = self._key(prefix.rstrip("/")) + "/" if prefix else (f"{self.prefix}/" if self.prefix else "")
        names: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
            names.update(p["Prefix"][len(base):].rstrip("/") for p in page.get("CommonPrefixes", []))
            names.update(o["Key"][len(base):] for o in page.get("Contents", []))
        return sorted(n for n in names if n and not n.startswith("."))

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"
