"""``python -m libs.cli``: the ``pas`` command without its console script."""

from libs.cli.app import main

if __name__ == "__main__":  # imported by tools that walk every module: do nothing then
    main()
