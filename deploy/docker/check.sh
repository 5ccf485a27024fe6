#!/usr/bin/env bash
# Exercise the image build without a Docker engine: copy exactly what deploy/Dockerfile COPYs into a
# scratch dir and run the same deploy/docker/install.sh into a clean venv (torch==2.13.0+cpu comes from
# pip's find-links when TORCH_INDEX_URL is unset, so the CPU wheel is reused, not downloaded).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src/deploy/docker"
cp "$root/pyproject.toml" "$root/README.md" "$work/src/"
cp "$root/deploy/docker/install.sh" "$root/deploy/docker/lockfile.py" "$work/src/deploy/docker/"
cp "$root/deploy/requirements.lock" "$work/src/deploy/"
for pkg in core iokit streams funnel feature_store models services; do
  (cd "$root" && tar --exclude=__pycache__ --exclude='*.pyc' --exclude=feature_store/repo/data -cf - "$pkg") \
    | tar -xf - -C "$work/src"
done
# Skip byte-compiling ~20k modules (the image build keeps it); installing, pip check and imports still run.
export PIP_NO_COMPILE="${PIP_NO_COMPILE:-1}"
start=$(date +%s)
bash "$work/src/deploy/docker/install.sh" "$work/venv" "$work/src" 2> >(grep -v '^WARNING: Location' >&2)
echo "deploy-check: image install steps passed in $(( $(date +%s) - start )) s"
