#!/usr/bin/env bash
# Bring up the local services: setup (deps + jars), our Redis, our single-node Kafka, a local S3 (moto), and
# with FEATURESTORE_REDIS_CLUSTER=1 a local Redis Cluster too (infra/redis-cluster.sh; the tests start it on demand).
# Idempotent: when everything is already up it only checks health (about 1 s).
# Prints one line per service with its address; exits non-zero with a one-line reason on failure.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

"$INFRA_DIR/setup.sh"
"$INFRA_DIR/redis.sh" start
"$INFRA_DIR/kafka.sh" start
if [[ "${FEATURESTORE_REDIS_CLUSTER:-0}" == 1 ]]; then
  "$INFRA_DIR/redis-cluster.sh" start
fi
if "$REPO_DIR/.venv/bin/python" -c 'import moto.server' >/dev/null 2>&1; then
  "$INFRA_DIR/s3.sh" start
else  # the S3 server runs from the project's .venv (moto[server], a test dependency)
  echo "s3: not started (moto[server] is not installed in .venv yet: bash infra/run.sh test installs it)"
fi
echo "flink: connector jars in $FLINK_JARS_DIR ($(count_jars "$FLINK_JARS_DIR") jars; set FEATURESTORE_FLINK_JARS_DIR)"
