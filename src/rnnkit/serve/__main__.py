"""``python -m rnnkit.serve DIR [flags]`` is ``rnnkit serve DIR [flags]``."""

from rnnkit.serve.command import main

raise SystemExit(main())
