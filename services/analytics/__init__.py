"""The analytics collector: usage, cost and success analytics of PAS workflows and LLM calls."""
