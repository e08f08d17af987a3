#!/usr/bin/env bash
# Proves the light install (issue 12.1): a wheel of this checkout installed WITHOUT extras into a fresh
# venv of another supported Python (default 3.12; CI covers 3.11 with every extra), timed, then the batch
# path on it (infra/core_smoke.py: no Java, Kafka, Redis, Flink or Feast). Not part of CI (it downloads
# the newest releases the ranges allow); the figure it prints is in docs/install.md.
#
#   bash infra/check-core-install.sh [--lowest] [PYTHON]      # e.g. ~/.pyenv/versions/3.12.1/bin/python
#
# --lowest: the core dependencies at the lower bounds of pyproject.toml (uv's lowest-direct resolution,
# uv installed into the fresh venv by pip), then the same batch path: proves the lower bounds, not only
# the newest releases. Not timed like the default (uv is not what a user's pip does).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOWEST=0
if [ "${1:-}" = --lowest ]; then LOWEST=1; shift; fi
PY="${1:-}"
if [ -z "$PY" ]; then  # the first Python 3.12 that runs (a pyenv shim may exist and refuse)
  for c in $(ls -d "$HOME"/.pyenv/versions/3.12*/bin/python 2>/dev/null) $(command -v python3.12 || true); do
    if "$c" -c 'pass' >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] && "$PY" -c 'import sys; assert (3, 11) <= sys.version_info[:2] <= (3, 12)' \
  || { echo "error: give a Python 3.11-3.12 (found: ${PY:-none})" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# build from a copy of the tracked (and new, unignored) files, so the checkout gets no build/ folder
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | (mkdir "$tmp/src" && tar -xf - -C "$tmp/src")
"$PY" -m pip wheel -q --no-deps -w "$tmp/wheel" "$tmp/src"
start="$(date +%s.%N)"
"$PY" -m venv "$tmp/venv"
if [ "$LOWEST" = 1 ]; then
  "$tmp/venv/bin/python" -m pip install -q uv
  "$tmp/venv/bin/python" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$ROOT/pyproject.toml" >"$tmp/core.txt"
  "$tmp/venv/bin/python" -m uv pip install -q --python "$tmp/venv/bin/python" --resolution lowest-direct -r "$tmp/core.txt"
  "$tmp/venv/bin/python" -m uv pip install -q --python "$tmp/venv/bin/python" --no-deps "$tmp"/wheel/featurestore-*.whl
  "$tmp/venv/bin/python" -m pip uninstall -q -y uv
else
  "$tmp/venv/bin/python" -m pip install -q "$tmp"/wheel/featurestore-*.whl
fi
secs="$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$start" "$(date +%s.%N)")"
count="$("$tmp/venv/bin/python" -m pip list --format=freeze 2>/dev/null | wc -l)"
size="$(du -sm "$tmp/venv" | cut -f1)"
(cd "$tmp" && "$tmp/venv/bin/python" "$ROOT/infra/core_smoke.py")
[ "$LOWEST" = 0 ] || { echo "core at its lower bounds on $("$PY" --version): OK"; exit 0; }
echo "core install on $("$PY" --version): ${secs}s for a fresh venv + pip install (${count} packages, ${size} MB; pip cache as it was; load average $(cut -d' ' -f1 /proc/loadavg))"
