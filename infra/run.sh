#!/usr/bin/env bash
# The two README commands go through here:
#   bash infra/run.sh demo   -> install, start Redis + Kafka, run `featurestore demo` on the example repo
#   bash infra/run.sh test   -> install, start Redis + Kafka, run the whole test suite (CI runs this)
#   bash infra/run.sh up     -> install, start Redis + Kafka, nothing else (then: source infra/env.sh)
# Idempotent: a second run skips what is already installed and running.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${FEATURESTORE_PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3

ensure_python_env() {
  "$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
    || { echo "error: Python 3.11 is required (found $("$PY" --version 2>&1)); set FEATURESTORE_PYTHON" >&2; exit 1; }
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.featurestore-installed" want
  want="$(cat pyproject.toml infra/requirements.lock | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing Python dependencies into .venv (first run takes a few minutes)..."
    "$VENV/bin/python" -m pip install -q --upgrade pip
    # every extra, at the exact versions of the lock (pyproject.toml has ranges: docs/install.md)
    "$VENV/bin/python" -m pip install -q -c infra/requirements.lock -e ".[all,test]"
    echo "$want" > "$stamp"
  fi
  "$VENV/bin/python" -m pip check
}

ensure_python_env
bash infra/up.sh
# shellcheck source=infra/env.sh
source infra/env.sh
export PATH="$VENV/bin:$PATH"

case "${1:-}" in
  demo) shift; exec featurestore demo "$@" ;;
  # two test processes (pytest-xdist), a file's tests in one of them: the suite waits on JVMs, brokers and
  # servers as much as it computes. FEATURESTORE_TEST_WORKERS=0 runs it in this process.
  test) shift; exec python -m pytest -n "${FEATURESTORE_TEST_WORKERS:-2}" --dist loadfile "$@" ;;
  up) echo "Redis and Kafka are up; in a shell: source infra/env.sh; .venv/bin/featurestore ..." ;;
  *) echo "usage: bash infra/run.sh demo|test|up [args...]" >&2; exit 2 ;;
esac
