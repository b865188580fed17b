"""`python -m agent` is `hotupgrade-agent`."""

import sys

from agent.cli import main

sys.exit(main())
