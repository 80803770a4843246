"""`python -m roller.devnet`: see roller/devnet/cli.py."""

import sys

from roller.devnet.cli import main

sys.exit(main())
