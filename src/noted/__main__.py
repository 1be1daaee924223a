"""``python -m noted ...``: the ``noted`` command."""

from noted.cli import main

raise SystemExit(main())
