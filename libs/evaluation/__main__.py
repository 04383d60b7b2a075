"""``python -m libs.evaluation``: the same as ``pas eval``."""

from libs.evaluation.cli import main

raise SystemExit(main())
