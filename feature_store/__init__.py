"""Feast repo, online state in Redis, readers and writers, the offline event archive."""

# prometheus_client picks its value class (single- or multi-process) when first imported, from the
# environment; importing Feast exports PROMETHEUS_MULTIPROC_DIR (feast/metrics.py). Import it before
# any Feast import in this package, so our metrics stay per registry (children: iokit.child_env).
import prometheus_client  # noqa: F401
