"""``python -m rnnkit.serve DIR [flags]`` is ``rnnkit serve DIR [flags]``."""

import sys

from rnnkit.cli import main

raise SystemExit(main(["serve", *sys.argv[1:]]))
