#!/usr/bin/env bash
# Our own Redis instance for development and tests (not the Debian system service).
#
#   infra/redis.sh start|stop|status|restart
#
# 127.0.0.1:$FEATURESTORE_REDIS_PORT (default 6390); state, pidfile and log in infra/.run/redis/
# ($FEATURESTORE_INFRA_RUN_DIR). The same code as `featurestore infra up|down|status redis`
# (featurestore/devinfra/services.py): `start` is a no-op when our instance already answers PING and waits
# up to 10 s for PING (longer while Redis says it is loading a large dataset); `status` exits 0 when
# healthy, 1 otherwise.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

devinfra redis "$@"
