# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this file
# Common helpers for the infra/*.sh scripts. Sourced, not executed.
# Every path is derived from this file's location, so the scripts work from any cwd.

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$INFRA_DIR/.." && pwd)"
CACHE_DIR="$INFRA_DIR/.cache"
RUN_DIR="${FEATURESTORE_INFRA_RUN_DIR:-$INFRA_DIR/.run}"  # data, logs, pidfiles (another dir: another instance)
FLINK_JARS_DIR="$CACHE_DIR/flink-jars"
TOOLS_DIR="$CACHE_DIR/tools"

FEATURESTORE_REDIS_PORT="${FEATURESTORE_REDIS_PORT:-6390}"
FEATURESTORE_KAFKA_PORT="${FEATURESTORE_KAFKA_PORT:-19092}"
FEATURESTORE_S3_PORT="${FEATURESTORE_S3_PORT:-19094}"

log() { printf '[infra] %s\n' "$*" >&2; }
die() { printf '[infra] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$FEATURESTORE_REDIS_PORT" =~ ^[0-9]+$ ]] || die "FEATURESTORE_REDIS_PORT must be a port number, got '$FEATURESTORE_REDIS_PORT'"
[[ "$FEATURESTORE_S3_PORT" =~ ^[0-9]+$ ]] || die "FEATURESTORE_S3_PORT must be a port number, got '$FEATURESTORE_S3_PORT'"
[[ "$FEATURESTORE_KAFKA_PORT" =~ ^[0-9]+$ ]] || die "FEATURESTORE_KAFKA_PORT must be a port number, got '$FEATURESTORE_KAFKA_PORT'"
FEATURESTORE_KAFKA_CONTROLLER_PORT="${FEATURESTORE_KAFKA_CONTROLLER_PORT:-$((FEATURESTORE_KAFKA_PORT + 1))}"
[[ "$FEATURESTORE_KAFKA_CONTROLLER_PORT" =~ ^[0-9]+$ ]] || die "FEATURESTORE_KAFKA_CONTROLLER_PORT must be a port number, got '$FEATURESTORE_KAFKA_CONTROLLER_PORT'"
[[ "$FEATURESTORE_KAFKA_CONTROLLER_PORT" != "$FEATURESTORE_KAFKA_PORT" ]] || die "FEATURESTORE_KAFKA_CONTROLLER_PORT must differ from FEATURESTORE_KAFKA_PORT ($FEATURESTORE_KAFKA_PORT)"

# devinfra_python ARGS...: this checkout's featurestore package (featurestore/devinfra/, standard library
# only) run by the project's .venv, else by python3.
devinfra_python() {
  local py="$REPO_DIR/.venv/bin/python"
  [[ -x "$py" ]] || py=python3
  PYTHONPATH="$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}" "$py" "$@"
}

# devinfra SERVICE COMMAND: featurestore/devinfra/services.py, what `featurestore infra up|down|status` runs,
# with this checkout's ports and run directory.
devinfra() {
  FEATURESTORE_REDIS_PORT="$FEATURESTORE_REDIS_PORT" FEATURESTORE_KAFKA_PORT="$FEATURESTORE_KAFKA_PORT" \
    FEATURESTORE_KAFKA_CONTROLLER_PORT="$FEATURESTORE_KAFKA_CONTROLLER_PORT" FEATURESTORE_INFRA_RUN_DIR="$RUN_DIR" \
    devinfra_python -m featurestore.devinfra.services "$@"
}

# count_jars DIR: number of *.jar files in DIR.
count_jars() {
  local jars=("$1"/*.jar)
  [[ -e "${jars[0]}" ]] && echo "${#jars[@]}" || echo 0
}

# java_major: prints the major version of `java` on PATH (e.g. 17), or nothing.
java_major() {
  command -v java >/dev/null 2>&1 || return 0
  java -version 2>&1 | awk -F'"' '/version/ { split($2, v, "."); print (v[1] == "1" ? v[2] : v[1]); exit }'
}

require_java17() {
  local major
  major="$(java_major)"
  [[ -n "$major" ]] || die "Java 17 not found: install openjdk-17 (apt-get install -y openjdk-17-jdk-headless)"
  [[ "$major" -ge 17 ]] || die "Java $major found but Java 17+ is required: install openjdk-17 (apt-get install -y openjdk-17-jdk-headless)"
}

# port_open HOST PORT: true when something accepts TCP connections there (bash /dev/tcp, 1 s timeout).
port_open() {
  timeout 1 bash -c "exec 3<>/dev/tcp/$1/$2" >/dev/null 2>&1
}

# pid_alive PIDFILE [CMDLINE_PATTERN]: prints the pid and returns 0 when the pidfile names a live
# process (whose command line contains the pattern, to survive pid reuse).
pid_alive() {
  local pidfile="$1" pattern="${2:-}" pid
  [[ -s "$pidfile" ]] || return 1
  pid="$(tr -dc '0-9' <"$pidfile")"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
  if [[ -n "$pattern" && -r "/proc/$pid/cmdline" ]]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pattern" || return 1
  fi
  printf '%s\n' "$pid"
}

# stop_pid PIDFILE PATTERN NAME TIMEOUT_S: SIGTERM, wait, then SIGKILL. Removes the pidfile.
stop_pid() {
  local pidfile="$1" pattern="$2" name="$3" timeout_s="$4" pid i
  if ! pid="$(pid_alive "$pidfile" "$pattern")"; then
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout_s * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }
    sleep 0.1
  done
  log "$name (pid $pid) did not stop within ${timeout_s}s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  sleep 0.5
  rm -f "$pidfile"
}
