#!/usr/bin/env bash
# A local S3-compatible server for development and tests: moto's standalone server (`moto[server]`, a
# test dependency installed into .venv by infra/run.sh), the same S3 API calls a real bucket gets.
#
#   infra/s3.sh start|stop|status|restart
#
# http://127.0.0.1:$FEATURESTORE_S3_PORT (default 19094); in memory (a restart empties every bucket);
# pidfile and log in infra/.run/s3/. Any access key is accepted (tests use AWS_ACCESS_KEY_ID=testing).
# `status` exits 0 when healthy, 1 otherwise.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

HOST=127.0.0.1
PORT="$FEATURESTORE_S3_PORT"
DIR="$RUN_DIR/s3"
PIDFILE="$DIR/moto.pid"
LOGFILE="$DIR/moto.log"
START_TIMEOUT_S=30
URL="http://$HOST:$PORT"
PYTHON="$REPO_DIR/.venv/bin/python"
SERVER="$INFRA_DIR/tools/moto_s3.py"  # moto's server, one request at a time (why: in that file)

healthy() {
  # moto's own health endpoint; any HTTP answer from the S3 API would do as well
  timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$PORT && printf 'GET /moto-api/ HTTP/1.0\r\n\r\n' >&3 && head -c 12 <&3" 2>/dev/null \
    | grep -q '^HTTP/1.[01] 200'
}

cmd_status() {
  local pid
  if pid="$(pid_alive "$PIDFILE" moto_s3.py)" && healthy; then
    echo "s3: up at $URL (moto, pid $pid)"
    return 0
  fi
  echo "s3: down ($URL)"
  return 1
}

cmd_start() {
  local pid i
  "$PYTHON" -c 'import moto.server' 2>/dev/null || die "moto[server] not installed in $REPO_DIR/.venv: run 'bash infra/run.sh test' once (installs it)"
  if pid="$(pid_alive "$PIDFILE" moto_s3.py)"; then
    if healthy; then
      echo "s3: already running at $URL (moto, pid $pid)"
      return 0
    fi
  else
    rm -f "$PIDFILE"
    if port_open "$HOST" "$PORT"; then
      die "port $HOST:$PORT is in use by a process not started by infra/s3.sh: stop it or set FEATURESTORE_S3_PORT"
    fi
    mkdir -p "$DIR"
    setsid "$PYTHON" "$SERVER" "$HOST" "$PORT" >>"$LOGFILE" 2>&1 < /dev/null &
    echo $! >"$PIDFILE"
  fi
  for ((i = 0; i < START_TIMEOUT_S * 10; i++)); do
    if healthy; then
      echo "s3: started at $URL (moto, pid $(cat "$PIDFILE"), log ${LOGFILE#"$REPO_DIR"/})"
      return 0
    fi
    pid_alive "$PIDFILE" moto_s3.py >/dev/null || { tail -n 20 "$LOGFILE" >&2 || true; die "moto_s3.py exited; see $LOGFILE"; }
    sleep 0.1
  done
  tail -n 20 "$LOGFILE" >&2 || true
  die "moto_s3.py did not answer on $HOST:$PORT within ${START_TIMEOUT_S}s; see $LOGFILE"
}

cmd_stop() {
  if pid_alive "$PIDFILE" moto_s3.py >/dev/null; then
    stop_pid "$PIDFILE" moto_s3.py s3 10
    echo "s3: stopped"
  else
    rm -f "$PIDFILE"
    echo "s3: not running"
  fi
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  restart) cmd_stop; cmd_start ;;
  *) echo "usage: $(basename "$0") start|stop|status|restart" >&2; exit 2 ;;
esac
