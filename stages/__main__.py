"""`python -m stages <study> <stage> <slug>`: build one node (what both engines run)."""

import sys

from pipeline.runner import main
from stages import RECIPES

sys.exit(main(RECIPES))
