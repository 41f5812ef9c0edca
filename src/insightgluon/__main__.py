"""``python -m insightgluon SUBCOMMAND ...``."""
import sys

from insightgluon.cli import main

sys.exit(main())
