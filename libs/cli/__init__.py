"""``pas``: the operator's command for a running PAS (``pas --help``; docs/operations.md).

One module per command group (status, send, trigger, dlq, costs); the settings are read once
from the environment, like every PAS service's, and passed down.
"""
