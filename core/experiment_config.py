"""The ``[[experiments]]`` section of the settings file: A/B splits and interleavings, pure data.

An experiment takes the slice ``[offset, offset + traffic)`` of its layer's users (a salted hash of
the user id per layer, so experiments of one layer never share a user) and splits it among its arms
by a second hash salted with the experiment (so consecutive experiments of a layer are not split the
same way). ``kind = "interleave"`` has two arms: each user of the slice gets one feed that
team-draft-interleaves both arms' rankings.

Example (TOML)::

    [[experiments]]
    name = "lambda-08"
    layer = "rerank"
    start = 2026-01-01T00:00:00Z
    end = 2026-02-01T00:00:00Z
    traffic = 0.5
    arms = [{ name = "control" }, { name = "lambda08", overrides = { diversity_lambda = 0.8 } }]
"""

from __future__ import annotations

import math
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
SHARE_TOLERANCE = 1e-6
OVERRIDE_KEYS = ("model_version", "head_weights", "diversity", "diversity_lambda", "explore_slots",
                 "explore_policy", "sources")


def _timestamp(value: Any) -> Any:
    """Unix seconds from a number, a TOML datetime (naive = UTC) or an ISO-8601 string."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value  # pydantic reports it as not a number
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    return value


Timestamp = Annotated[float, BeforeValidator(_timestamp), Field(ge=0, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=NAME_PATTERN)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ArmOverrides(_Strict):
    """What an arm changes for its users; ``None`` keeps the process's own setting."""

    model_version: str | None = Field(
        None, min_length=1, description="ranker version to serve (kept loaded beside the active one)")
    head_weights: dict[str, float] | None = Field(None, description="ranking.head_weights")
    diversity: Literal["mmr", "dpp", "none"] | None = None
    diversity_lambda: float | None = Field(None, ge=0, le=1)
    explore_slots: int | None = Field(None, ge=0, le=50)
    explore_policy: Literal["thompson", "uniform"] | None = None
    sources: list[str] | None = Field(None, min_length=1, description="candidate sources to run")

    def changed(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Arm(_Strict):
    name: Name
    share: float = Field(1.0, gt=0, le=1, description="share of the experiment's users (ab); sums to 1")
    overrides: ArmOverrides = ArmOverrides()


class Experiment(_Strict):
    name: Name
    layer: Name = "default"
    kind: Literal["ab", "interleave"] = "ab"
    start: Timestamp
    end: Timestamp
    traffic: float = Field(1.0, gt=0, le=1, description="share of the layer's users in this experiment")
    offset: float = Field(0.0, ge=0, lt=1, description="where the experiment's slice of the layer starts")
    salt: str | None = Field(None, min_length=1, description="arm hash salt (default: the name)")
    arms: list[Arm] = Field(min_length=2, max_length=16)

    @model_validator(mode="after")
    def _consistent(self) -> Experiment:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        if self.offset + self.traffic > 1.0 + SHARE_TOLERANCE:
            raise ValueError(f"offset + traffic = {self.offset + self.traffic:g} exceeds 1")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if self.kind == "interleave" and len(self.arms) != 2:
            raise ValueError("an interleave experiment has exactly two arms")
        total = sum(a.share for a in self.arms)
        if self.kind == "ab" and not math.isclose(total, 1.0, abs_tol=SHARE_TOLERANCE):
            raise ValueError(f"arms' shares must sum to 1, got {total:g}")
        return self

    @property
    def arm_salt(self) -> str:
        return self.salt or self.name

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def overlaps(self, other: Experiment) -> bool:
        return self.start < other.end and other.start < self.end


def experiment_problems(experiments: list[Experiment]) -> list[tuple[str, str]]:
    """Cross-experiment conflicts as (key, reason): duplicate names, two experiments of a layer whose
    slices overlap while both run, two experiments of different layers that run at the same time and
    override the same setting (a user in both would get either), and two interleavings in different
    layers at the same time."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for k, exp in enumerate(experiments):
        if exp.name in seen:
            problems.append((f"experiments.{k}.name", f"duplicate experiment name {exp.name!r}"))
        seen.setdefault(exp.name, k)
        for j, other in enumerate(experiments[:k]):
            if exp.overlaps(other):
                problems += _pair_problems(k, exp, j, other)
    return problems


def _pair_problems(k: int, exp: Experiment, j: int, other: Experiment) -> list[tuple[str, str]]:
    if exp.kind == other.kind == "interleave" and exp.layer != other.layer:
        return [(f"experiments.{k}.kind", f"a second interleaving runs beside {other.name!r}; a feed "
                 "interleaves two rankings at most: put them in one layer")]
    if exp.layer == other.layer:
        lo, hi = max(exp.offset, other.offset), min(exp.offset + exp.traffic, other.offset + other.traffic)
        if lo < hi - SHARE_TOLERANCE:
            return [(f"experiments.{k}.offset", f"slice [{exp.offset:g}, {exp.offset + exp.traffic:g}) "
                     f"of layer {exp.layer!r} overlaps experiment {other.name!r} while both run")]
        return []
    mine = {key for arm in exp.arms for key in arm.overrides.changed()}
    theirs = {key for arm in other.arms for key in arm.overrides.changed()}
    return [(f"experiments.{k}.arms", f"overrides {key!r} like experiment {other.name!r} (layer "
             f"{other.layer!r}) while both run; put them in one layer") for key in sorted(mine & theirs)]


def check_experiments(experiments: list[Experiment]) -> list[Experiment]:
    """The list unchanged, or ValueError naming every conflicting key."""
    problems = experiment_problems(experiments)
    if problems:
        raise ValueError("; ".join(f"{key}: {reason}" for key, reason in problems))
    return experiments
