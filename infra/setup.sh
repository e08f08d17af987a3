#!/usr/bin/env bash
# Ensure system dependencies and fetch the pinned jars the local services and Flink jobs need
# (featurestore/devinfra/: Python, SHA-256 checked, no Maven). Idempotent: a second run only checks that
# the jars are there with their pinned sizes (well under 2 s).
#
#   infra/setup.sh            # check / install / fetch
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

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
  # Another apt-get (a second setup, unattended upgrades) holds dpkg's lock: wait for it, within the timeout,
  # rather than failing at once.
  local wait_lock=(-o "DPkg::Lock::Timeout=$APT_TIMEOUT_S")
  if [[ "$APT_UPDATED" != 1 ]]; then
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT_S" apt-get "${wait_lock[@]}" update -qq \
      || die "apt-get update failed (or timed out after ${APT_TIMEOUT_S}s): cannot install $what"
    APT_UPDATED=1
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive timeout "$APT_TIMEOUT_S" \
    apt-get "${wait_lock[@]}" install -y -qq --no-install-recommends "$@" >/dev/null \
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
  command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found: install coreutils"
}

# --- the Flink connector jars ------------------------------------------------------------------
# The pinned jars (featurestore/devinfra/pins.py, each checked by SHA-256), fetched by the same Python code as
# `featurestore infra jars` into the user cache (~/.cache/featurestore/jars/flink-<digest>, copied from ~/.m2
# when there, else from Maven Central); infra/.cache/flink-jars is a link to that folder, so this checkout's
# featurestore.yaml, env.sh and tests find them where they always did. No Maven needed.
link_flink_jars() {
  local dir
  dir="$(devinfra_python -m featurestore.devinfra.jars flink)" || die "fetching the Flink connector jars failed (above)"
  [[ -d "$dir" ]] || die "the Flink jar fetch printed no folder: '$dir'"
  if [[ -L "$FLINK_JARS_DIR" && "$(readlink "$FLINK_JARS_DIR")" == "$dir" ]]; then
    return 0
  fi
  mkdir -p "$CACHE_DIR"
  rm -rf "$FLINK_JARS_DIR" "$CACHE_DIR/flink-jars.stamp"  # a folder Maven filled before, or a link to older pins
  ln -s "$dir" "$FLINK_JARS_DIR"
  log "flink: $(count_jars "$FLINK_JARS_DIR") connector jars in ${FLINK_JARS_DIR#"$REPO_DIR"/} -> $dir"
}

main() {
  ensure_redis
  ensure_chromium
  ensure_tools
  link_flink_jars
  # the Kafka broker's pinned jars (featurestore/devinfra/pins.py) into the user cache, as `featurestore infra up`
  devinfra_python -m featurestore.devinfra.jars kafka >/dev/null
}

main "$@"
