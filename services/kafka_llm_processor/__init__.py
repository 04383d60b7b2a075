"""Kafka LLM processor: documents from ``financial-documents``, answers to ``llm-results``."""
