"""Async httpx clients for PAS services."""
