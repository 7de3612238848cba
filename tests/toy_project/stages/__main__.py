import sys

from pipeline.runner import main
from stages import RECIPES

sys.exit(main(RECIPES))
