#!/usr/bin/env bash
# Regenerate the locks every install uses (`make lock`):
#   deploy/requirements.lock      the runtime set: streamrec[s3] with torch, exact versions and hashes.
#                                 The image installs it, and it is the base of the dev set.
#   deploy/requirements-dev.lock  `-r requirements.lock` plus the dev extra's tools and what the client
#                                 distribution (client/) needs, resolved with every runtime pin as a
#                                 constraint (so both files agree by construction).
# `make venv|test|demo`, CI and deploy/docker/install.sh install them with --require-hashes --no-deps:
# nothing is resolved at install time, so no range can pull a CUDA torch or a new release.
# Resolution is pip's own (--dry-run --report) against the indexes pip is configured with; torch 2.13.0
# is the CPU wheel pip finds on local disk (its find-links), pinned as torch==2.13.0+cpu with that file's
# hash. The hashes are those of the files chosen for CPython 3.11 on Linux x86_64 (this machine and
# the image): lock on that platform.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PYTHON:-python3.11}"
"$python" -m venv "$work/venv"
resolve() {  # resolve REPORT ARGS...: pip's resolution of ARGS, nothing installed
  local report="$1"
  shift
  "$work/venv/bin/pip" install -q --disable-pip-version-check --dry-run --ignore-installed \
    --report "$report" "$@" 2> >(grep -v '^WARNING: Location' >&2)
}
render() {  # render REPORT [BASE_REPORT]: the pins of REPORT not in BASE_REPORT, with hashes
  "$work/venv/bin/python" "$root/deploy/docker/lockfile.py" render "$root" "$@"
}
resolve "$work/runtime.json" "torch==2.13.0" "$root[s3]"
render "$work/runtime.json" > "$work/requirements.lock"
"$work/venv/bin/python" "$root/deploy/docker/lockfile.py" constraints "$work/requirements.lock" \
  > "$work/constraints.txt"
resolve "$work/dev.json" -c "$work/constraints.txt" "torch==2.13.0" "$root[s3,dev]" "$root/client"
render "$work/dev.json" "$work/runtime.json" > "$work/requirements-dev.lock"
cp "$work/requirements.lock" "$work/requirements-dev.lock" "$root/deploy/"
echo "wrote deploy/requirements.lock ($(grep -c '^[a-z0-9]' "$root/deploy/requirements.lock") pins) and" \
     "deploy/requirements-dev.lock ($(grep -c '^[a-z0-9]' "$root/deploy/requirements-dev.lock") more)"
