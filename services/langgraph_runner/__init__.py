"""The LangGraph runner: PAS workflows as checkpointed LangGraph graphs over REST and Kafka."""
