# shellcheck shell=bash
# Source this to export the service addresses used by the project and its tests:
#   source infra/env.sh
# Values already set in the environment win (so FEATURESTORE_REDIS_PORT=... etc. carry through).
_fs_infra_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
export FEATURESTORE_REDIS_PORT="${FEATURESTORE_REDIS_PORT:-6390}"
export FEATURESTORE_KAFKA_PORT="${FEATURESTORE_KAFKA_PORT:-19092}"
export FEATURESTORE_REDIS_URL="${FEATURESTORE_REDIS_URL:-redis://127.0.0.1:${FEATURESTORE_REDIS_PORT}/0}"
export FEATURESTORE_REDIS_CLUSTER_PORT="${FEATURESTORE_REDIS_CLUSTER_PORT:-7100}"  # infra/redis-cluster.sh: 6 nodes from here
export FEATURESTORE_KAFKA_BOOTSTRAP="${FEATURESTORE_KAFKA_BOOTSTRAP:-127.0.0.1:${FEATURESTORE_KAFKA_PORT}}"
export FEATURESTORE_S3_PORT="${FEATURESTORE_S3_PORT:-19094}"
export FEATURESTORE_S3_ENDPOINT="${FEATURESTORE_S3_ENDPOINT:-http://127.0.0.1:${FEATURESTORE_S3_PORT}}"
export FEATURESTORE_FLINK_JARS_DIR="${FEATURESTORE_FLINK_JARS_DIR:-${_fs_infra_dir}/.cache/flink-jars}"
unset _fs_infra_dir
