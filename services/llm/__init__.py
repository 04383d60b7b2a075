"""Local LLM wrappers: one shared base, a few lines of configuration per model service."""
