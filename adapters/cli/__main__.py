"""``python -m adapters.cli``: the eventsrc command line."""

import sys

from adapters.cli import main

sys.exit(main())
