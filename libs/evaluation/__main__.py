"""``python -m libs.evaluation``: the same as ``pas eval``."""

from libs.evaluation.cli import main

if __name__ == "__main__":  # imported by tools that walk every module: do nothing then
    raise SystemExit(main())
