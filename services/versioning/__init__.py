"""The version manager: git-backed workflow versions, aliases, rollback, compare, A/B tests."""
