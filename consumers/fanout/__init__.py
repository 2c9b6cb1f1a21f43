"""The fan-out worker: events matched to webhooks, delivery records in transactions."""
