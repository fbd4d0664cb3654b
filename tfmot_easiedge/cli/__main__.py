"""``python -m tfmot_easiedge.cli``: the same as ``easiedge``."""
import sys

from tfmot_easiedge.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
