#!/usr/bin/env bash
# Stop the local services started by infra/up.sh (and the Redis Cluster, if one runs) (data in infra/.run/ is kept; rm -rf infra/.run to reset).
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

rc=0
"$INFRA_DIR/s3.sh" stop || rc=1
"$INFRA_DIR/kafka.sh" stop || rc=1
"$INFRA_DIR/redis.sh" stop || rc=1
"$INFRA_DIR/redis-cluster.sh" stop || rc=1
exit "$rc"
