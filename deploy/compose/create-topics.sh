#!/bin/bash
# Creates the pipeline's topics on the compose cluster, once, before the workers start.
# Settings as in synctec_webhooks/kafka/ core_topics() (a test keeps them in step),
# replicated on all three brokers with min.insync.replicas=2 (the brokers' default).
# Delivery topics, one per webhook, are created by the fan-out on demand.
set -euo pipefail
: "${BOOTSTRAP:?}" "${PREFIX:?}" "${RETRY_TIERS:?}"

create() {
    /opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
        --replication-factor 3 "$@"
}

create --topic "$PREFIX.events" --partitions 6 --config retention.ms=604800000
create --topic "$PREFIX.subscriptions" --partitions 1 \
    --config cleanup.policy=compact --config min.compaction.lag.ms=0
create --topic "$PREFIX.deadletters" --partitions 3 --config retention.ms=-1
create --topic "$PREFIX.deadletters.replayed" --partitions 1 --config cleanup.policy=compact
create --topic "$PREFIX.attempts" --partitions 3 --config retention.ms=604800000
create --topic "$PREFIX.accounts" --partitions 1 \
    --config cleanup.policy=compact --config min.compaction.lag.ms=0
create --topic "$PREFIX.api-keys" --partitions 1 \
    --config cleanup.policy=compact --config min.compaction.lag.ms=0
create --topic "$PREFIX.audit" --partitions 3 --config retention.ms=31536000000
for tier in $(seq 1 "$RETRY_TIERS"); do
    create --topic "$PREFIX.retry.$tier" --partitions 3 --config retention.ms=604800000
done
/opt/kafka/bin/kafka-topics.sh --bootstrap-server "$BOOTSTRAP" --list
