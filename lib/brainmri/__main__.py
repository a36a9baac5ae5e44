"""``python -m brainmri``: the same as the ``brainmri`` command."""

from brainmri.cli import main

raise SystemExit(main())
