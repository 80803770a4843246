"""`python -m roller.listener` (roller.listener.cli)."""

import sys

from roller.listener.cli import main

sys.exit(main())
