"""Drift monitor: PSI/KS on key features, score shift, CTR drop, embedding drift vs training data."""

from services.drift.job import DriftOutcome, run_drift
from services.drift.monitor import Check, DriftContext, DriftResult, compute_drift

__all__ = ["Check", "DriftContext", "DriftOutcome", "DriftResult", "compute_drift", "run_drift"]
