"""``python -m attnviz``: see :mod:`attnviz.cli`."""

from attnviz.cli import main

raise SystemExit(main())
