"""StoreLink webhook delivery on Apache Kafka: the shared core.

Pure logic (matching, signing, retry schedule, serialization, offset tracking) lives in
modules that never touch the network; `kafka` is the only module that builds
confluent-kafka clients.
"""
