"""The platform's JSON Schemas of its wire records, and validation against them.

The schema files are not a copy: the wheel carries core/schemas/*.json of the repository it was built
from (see client/pyproject.toml), which the platform generates from its own models. In a source
checkout (an editable install) they are read from core/schemas directly.
"""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

MAX_EVENT_BYTES = 64 * 1024  # the platform refuses (dead-letters) a larger encoded record
_PACKAGED = Path(__file__).resolve().parent / "schemas"
_CHECKOUT = Path(__file__).resolve().parents[4] / "core" / "schemas"


class InvalidEvent(ValueError):
    """A record the platform would refuse. ``field`` names the offending field ("" for the whole
    record), ``reason`` is the platform's dead-letter reason code where one applies."""

    def __init__(self, schema: str, field: str, reason: str, detail: str) -> None:
        where = f"{schema}.{field}" if field else schema
        super().__init__(f"{where}: {detail}")
        self.schema, self.field, self.reason, self.detail = schema, field, reason, detail


def schema_dir() -> Path:
    if _PACKAGED.is_dir():
        return _PACKAGED
    if _CHECKOUT.is_dir():
        return _CHECKOUT
    raise FileNotFoundError(f"no event schemas at {_PACKAGED} (nor {_CHECKOUT}): reinstall streamrec-client")


@cache
def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of one record kind: interaction, item_upsert, user_upsert, feed, ..."""
    loaded: dict[str, Any] = json.loads((schema_dir() / f"{name}.schema.json").read_text())
    return loaded


@cache
def _validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema(name))


def validate(name: str, record: dict[str, Any], allow_extra: bool = False) -> bytes:
    """``record`` encoded as the platform reads it, or InvalidEvent naming the first bad field.

    ``allow_extra`` (for what the client reads, not what it sends): fields this schema does not know
    are accepted, so a client built before the platform added a field still reads its feeds."""
    _check_finite(name, record, "")
    errors = _validator(name).iter_errors(record)
    error = best_match(e for e in errors if not (allow_extra and e.validator == "additionalProperties"))
    if error is not None:
        raise _invalid(name, error)
    encoded = json.dumps(record, separators=(",", ":"), allow_nan=False).encode()
    if len(encoded) > MAX_EVENT_BYTES:
        raise InvalidEvent(name, "", "oversized", f"{len(encoded)} bytes encoded, limit {MAX_EVENT_BYTES}")
    return encoded


def _check_finite(name: str, value: Any, path: str) -> None:
    """NaN and Infinity are not JSON, and the platform refuses them (reason ``non_finite``)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidEvent(name, path, "non_finite", f"{value!r} is not a finite number")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_finite(name, item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for k, item in enumerate(value):
            _check_finite(name, item, f"{path}.{k}" if path else str(k))


def _invalid(name: str, error: ValidationError) -> InvalidEvent:
    path = [str(p) for p in error.absolute_path]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else ""
        return InvalidEvent(name, ".".join([*path, missing]), "missing_field", error.message)
    if error.validator == "additionalProperties":
        return InvalidEvent(name, ".".join(path), "unknown_field", error.message)
    return InvalidEvent(name, ".".join(path), "invalid_field", error.message)
