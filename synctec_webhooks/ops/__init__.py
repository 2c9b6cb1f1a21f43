"""Operations: /metrics /healthz /readyz, the metrics bundle, Kafka statistics, logs."""
