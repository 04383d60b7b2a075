"""The agent registry: every PAS service registers here and finds the others."""
