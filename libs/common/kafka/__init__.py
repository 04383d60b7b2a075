"""Kafka for PAS: topics, the embedded development broker, client settings."""
