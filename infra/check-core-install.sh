#!/usr/bin/env bash
# Proves the light install (issue 12): a wheel of this checkout installed WITHOUT extras into a fresh venv
# of another supported Python (default: 3.10, the oldest; CI's own venv is 3.11 with every extra), timed,
# then the batch path on it (infra/core_smoke.py: no Java, Kafka, Redis, Flink or Feast).
#
#   bash infra/check-core-install.sh [--lowest] [--tests] [PYTHON]   # e.g. ~/.pyenv/versions/3.10.13/bin/python
#
# --lowest  the core dependencies at the lower bounds of pyproject.toml (pinned with ==, their own
#           dependencies at the newest releases they accept): proves the lower bounds. Without it: the
#           newest releases the ranges allow on that Python.
# --tests   then also runs, in that venv, the core tests that depend on the DuckDB release (event times
#           read from Parquet, the loader's messages) and the offline store and training sets against the
#           brute-force oracle (tests/test_historical_oracle.py), with pytest (the lock's version) installed
#           AFTER the checks above (it is not a core dependency).
#
# Wheels come from a wheelhouse in the user cache (where the pinned jars go, so every clone and CI run on this
# machine share it), ~/.cache/featurestore/wheels/py<version>-<mode>-<digest of the requirements>/ (mode:
# lowest, or newest-<UTC day> so the newest releases are looked up again each day), filled by
# `pip download` on first use (PyPI; FEATURESTORE_WHEELHOUSE for another folder), with what building the wheel
# needs: later runs build and install offline (`--no-index`), so the figure printed is a warm install, not
# the network's speed.
# FEATURESTORE_CORE_RESULT=FILE: core_smoke.py writes its training set there (tests/test_core_install.py
# compares it with the project's own venv). tests/test_core_install.py runs `--lowest --tests` on Python
# 3.10 in CI (marked slow); docs/install.md has the figures.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOWEST=0 TESTS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --lowest) LOWEST=1; shift ;;
    --tests) TESTS=1; shift ;;
    -*) echo "usage: bash infra/check-core-install.sh [--lowest] [--tests] [PYTHON]" >&2; exit 2 ;;
    *) break ;;
  esac
done
PY="${1:-}"
if [ -z "$PY" ]; then  # the first Python 3.10 that runs (a pyenv shim may exist and refuse)
  for c in $(ls -d "$HOME"/.pyenv/versions/3.10*/bin/python 2>/dev/null) $(command -v python3.10 || true); do
    if "$c" -c 'pass' >/dev/null 2>&1; then PY="$c"; break; fi
  done
fi
[ -n "$PY" ] && "$PY" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 12)' \
  || { echo "error: give a Python 3.10-3.12 (found: ${PY:-none}; pyenv install 3.10)" >&2; exit 1; }
pyver="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
HOST_PY="$ROOT/.venv/bin/python"; [ -x "$HOST_PY" ] || HOST_PY=python3  # reads pyproject.toml (tomllib)
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# the requirements: the core's ranges, or (--lowest) each pinned at its lower bound
# (and build.txt: what building the wheel needs, [build-system] requires, also taken from the wheelhouse)
"$HOST_PY" - "$ROOT/pyproject.toml" "$LOWEST" "$tmp/build.txt" >"$tmp/core.txt" <<'EOF'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))
for dep in project["project"]["dependencies"]:
    if sys.argv[2] == "1":
        name, low = re.fullmatch(r"([A-Za-z0-9_.\-]+)>=([^,]+),.*", dep).groups()
        dep = f"{name}=={low}"
    print(dep)
open(sys.argv[3], "w").write("\n".join(project["build-system"]["requires"]) + "\n")
EOF
# the test runner at the lock's version (not a core dependency: only --tests installs it, after the checks;
# always in the wheelhouse, so one wheelhouse serves both)
grep -E '^pytest==' "$ROOT/infra/requirements.lock" >"$tmp/test.txt"
mode="$([ "$LOWEST" = 1 ] && echo lowest || echo "newest-$(date -u +%Y%m%d)")"  # newest: a wheelhouse a day
digest="$(cat "$tmp/core.txt" "$tmp/test.txt" "$tmp/build.txt" | sha256sum | cut -c1-12)"
cache="${FEATURESTORE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/featurestore}"  # the jars' user cache too
house="${FEATURESTORE_WHEELHOUSE:-$cache/wheels/py$pyver-$mode-$digest}"

"$PY" -m venv "$tmp/venv"
VPY="$tmp/venv/bin/python"
if [ ! -f "$house/.complete" ]; then
  # into a folder of our own, renamed into place when complete: a failed or concurrent download (another
  # clone, another CI run) never leaves a partial wheelhouse; one retry for a network hiccup
  echo "[check-core-install] downloading the wheels into $house (first run; later runs install offline)" >&2
  mkdir -p "$(dirname "$house")"
  dl="$(mktemp -d "$(dirname "$house")/.download.XXXXXX")"
  reqs=(-r "$tmp/core.txt" -r "$tmp/build.txt" -r "$tmp/test.txt")
  "$VPY" -m pip download -q --only-binary=:all: -d "$dl" "${reqs[@]}" \
    || { sleep 5; "$VPY" -m pip download -q --only-binary=:all: -d "$dl" "${reqs[@]}"; } \
    || { rm -rf "$dl"; echo "error: cannot download the core's wheels from PyPI (above)" >&2; exit 1; }
  touch "$dl/.complete"
  mv -T "$dl" "$house" 2>/dev/null || rm -rf "$dl"  # another run got there first: use its (identical) folder
fi
# the wheel, built offline from a copy of the tracked (and new, unignored) files: the checkout gets no build/
(cd "$ROOT" && git ls-files -co --exclude-standard -z | xargs -0 tar -cf - 2>/dev/null) | (mkdir "$tmp/src" && tar -xf - -C "$tmp/src")
"$VPY" -m pip wheel -q --no-deps --no-index --find-links "$house" -w "$tmp/wheel" "$tmp/src"
rm -rf "$tmp/venv"  # the timed part: a fresh venv, then pip install of the wheel (core only)
start="$(date +%s.%N)"
"$PY" -m venv "$tmp/venv"
"$VPY" -m pip install -q --no-index --find-links "$house" -r "$tmp/core.txt" "$tmp"/wheel/featurestore-*.whl
secs="$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.0f}')" "$start" "$(date +%s.%N)")"
count="$("$VPY" -m pip list --format=freeze 2>/dev/null | wc -l)"
size="$(du -sm "$tmp/venv" | cut -f1)"
echo "[check-core-install] core (${mode%%-*}) on Python $("$PY" -c 'import sys; print(sys.version.split()[0])'): ${secs}s for a fresh venv + pip install from the wheelhouse (${count} packages, ${size} MB, load average $(cut -d' ' -f1 /proc/loadavg))"
"$VPY" -m pip list --format=freeze 2>/dev/null | grep -iE '^(duckdb|pandas|pyarrow|numpy|typer|fastapi)==' | tr '\n' ' '; echo
# no Java, Kafka or Redis: PATH holds only the venv (no java), the addresses point at a closed port
(cd "$tmp" && env PATH="$tmp/venv/bin" JAVA_HOME= FEATURESTORE_REDIS_URL=redis://127.0.0.1:9/0 \
  FEATURESTORE_KAFKA_BOOTSTRAP=127.0.0.1:9 "$VPY" "$ROOT/infra/core_smoke.py")
if [ "$TESTS" = 1 ]; then
  "$VPY" -m pip install -q --no-index --find-links "$house" -r "$tmp/test.txt"
  # the tests of the checkout against the INSTALLED package (--import-mode=append: site-packages first),
  # from a copy so no cache or __pycache__ lands in the checkout
  (cd "$tmp/src" && rm -rf featurestore && "$VPY" -m pytest -q -p no:cacheprovider --import-mode=append \
    -m "not redis and not kafka and not flink and not feast" -k "not flink and not s3" \
    tests/test_event_times.py tests/test_loader.py tests/test_historical_oracle.py)
fi
