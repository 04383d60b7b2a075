"""The provider router: send a task to the cheapest capable model, fall back when one fails."""
