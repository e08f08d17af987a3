#!/usr/bin/env bash
# Ensure system dependencies and fetch the Maven artifacts the local services and Flink jobs need.
# Idempotent: a second run only checks stamps (well under 2 s).
#
#   infra/setup.sh            # check / install / fetch
#   FEATURESTORE_SETUP_FORCE=1 infra/setup.sh   # re-fetch the Maven artifacts
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

MVN_TIMEOUT_S="${FEATURESTORE_MVN_TIMEOUT_S:-900}"
APT_TIMEOUT_S="${FEATURESTORE_APT_TIMEOUT_S:-600}"

# --- system packages ---------------------------------------------------------------------------
# apt_install WHAT PKG...: install Debian packages (as root, or with passwordless sudo); WHAT names them in errors.
APT_UPDATED=0
apt_install() {
  local what="$1"; shift
  local sudo=()
  if [[ "$(id -u)" -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      die "$what not found: install it (apt-get install -y $*) or run infra/setup.sh as root"
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || die "$what not found and apt-get is unavailable: install $* by hand"
  if [[ "$APT_UPDATED" != 1 ]]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT_S" apt-get update -qq \
      || die "apt-get update failed (or timed out after ${APT_TIMEOUT_S}s): cannot install $what"
    APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT_S" \
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null \
    || die "apt-get install $* failed (or timed out after ${APT_TIMEOUT_S}s)"
}

ensure_redis() {
  if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    return 0
  fi
  log "installing redis-server with apt-get (the Debian service itself is not used; we run our own instance)"
  # The Debian package may try to start its own service on 6379; harmless, we use our own port/dir.
  apt_install redis-server redis-server
  command -v redis-server >/dev/null 2>&1 || die "redis-server still not on PATH after apt-get install"
  command -v redis-cli >/dev/null 2>&1 || die "redis-cli not found: install redis-tools (apt-get install -y redis-tools)"
}

# The web catalog's browser tests drive Debian's Chromium (tests/browser.py) over the DevTools protocol.
ensure_chromium() {
  if [[ -x /usr/bin/chromium ]]; then
    return 0
  fi
  log "installing chromium with apt-get (headless, for the web catalog's browser tests)"
  apt_install chromium chromium chromium-driver
  [[ -x /usr/bin/chromium ]] || die "/usr/bin/chromium still missing after apt-get install chromium"
}

ensure_tools() {
  require_java17
  command -v javac >/dev/null 2>&1 || die "javac not found: install a Java 17 JDK (apt-get install -y openjdk-17-jdk-headless)"
  command -v mvn >/dev/null 2>&1 || die "Maven not found: install maven (apt-get install -y maven)"
  command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found: install coreutils"
}

# --- Maven artifacts ---------------------------------------------------------------------------
# fingerprint FILE...: one hash over the given inputs (poms / sources); any change forces a re-fetch.
fingerprint() { cat "$@" | sha256sum | cut -c1-64; }

# stamp_ok STAMP DIR FINGERPRINT: the stamp has the fingerprint and every jar it lists is still in DIR.
stamp_ok() {
  local stamp="$1" dir="$2" fp="$3" line
  [[ "${FEATURESTORE_SETUP_FORCE:-0}" != 1 ]] || return 1
  [[ -s "$stamp" && -d "$dir" ]] || return 1
  [[ "$(head -n1 "$stamp")" == "$fp" ]] || return 1
  while IFS= read -r line; do
    [[ -f "$dir/$line" ]] || return 1
  done < <(tail -n +2 "$stamp")
}

# fetch_jars NAME DIR MVN_ARGS -- POM...: copy-dependencies of each pom into a temp dir, then swap it
# into DIR atomically and write the stamp (so a half-finished fetch never looks complete).
fetch_jars() {
  local name="$1" dir="$2"; shift 2
  local args=() poms=() pom fp stamp tmp
  while [[ $# -gt 0 && "$1" != "--" ]]; do args+=("$1"); shift; done
  shift
  poms=("$@")
  fp="$(fingerprint "${poms[@]}")"
  stamp="$CACHE_DIR/$name.stamp"
  if stamp_ok "$stamp" "$dir" "$fp"; then
    return 0
  fi
  mvn -v >/dev/null 2>&1 || die "mvn is on PATH but does not run: check the Maven install (mvn -v)"
  log "fetching $name jars from Maven (first run can take a few minutes)"
  mkdir -p "$CACHE_DIR"
  tmp="$(mktemp -d "$CACHE_DIR/.fetch-$name.XXXXXX")"
  for pom in "${poms[@]}"; do
    if ! timeout "$MVN_TIMEOUT_S" mvn -q -B -f "$pom" dependency:copy-dependencies \
      -DoutputDirectory="$tmp" "${args[@]}" >"$tmp.log" 2>&1; then
      tail -n 20 "$tmp.log" >&2 || true
      rm -rf "$tmp"
      die "Maven fetch for $name failed (or timed out after ${MVN_TIMEOUT_S}s) using $(basename "$pom"); is Maven Central reachable? log above"
    fi
  done
  rm -f "$tmp.log"
  compgen -G "$tmp/*.jar" >/dev/null || { rm -rf "$tmp"; die "Maven fetch for $name produced no jars"; }
  rm -rf "$dir.old"
  [[ ! -e "$dir" ]] || mv "$dir" "$dir.old"
  mv "$tmp" "$dir"
  rm -rf "$dir.old"
  { echo "$fp"; (cd "$dir" && ls -1 -- *.jar); } >"$stamp"
  log "$name: $(count_jars "$dir") jars in ${dir#"$REPO_DIR"/}"
}

main() {
  ensure_redis
  ensure_chromium
  ensure_tools
  fetch_jars flink-jars "$FLINK_JARS_DIR" -DexcludeTransitive=true -- \
    "$INFRA_DIR/pom-flink.xml" "$INFRA_DIR/pom-avro.xml" "$INFRA_DIR/pom-hadoop.xml"
  # the Kafka broker's pinned jars (featurestore/devinfra/pins.py) into the user cache, as `featurestore infra up`
  devinfra_python -m featurestore.devinfra.jars kafka >/dev/null
}

main "$@"
