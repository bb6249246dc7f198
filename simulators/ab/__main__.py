"""`python -m simulators.ab ...`: the same as `floorgate sim ab ...`."""

import sys

from simulators.ab.cli import main

sys.exit(main())
