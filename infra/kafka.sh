#!/usr/bin/env bash
# Single-node Kafka (KRaft combined mode: broker + controller in one JVM) for development and tests.
#
#   infra/kafka.sh start|stop|status|restart
#
# Broker listener 127.0.0.1:$FEATURESTORE_KAFKA_PORT (default 19092), controller listener on
# $FEATURESTORE_KAFKA_CONTROLLER_PORT (default: the broker port + 1). Data, generated server.properties,
# pidfile and logs in infra/.run/kafka/ ($FEATURESTORE_INFRA_RUN_DIR); the broker's pinned jars in the
# user cache (~/.cache/featurestore/jars/kafka-*). The same code as `featurestore infra up|down|status
# kafka` (featurestore/devinfra/services.py): `start` is a no-op when our broker is healthy and waits up to
# 60 s ($FEATURESTORE_KAFKA_START_TIMEOUT_S) for a metadata round trip; `status` exits 0 when healthy.
set -euo pipefail
# shellcheck source=infra/lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh"

devinfra kafka "$@"
