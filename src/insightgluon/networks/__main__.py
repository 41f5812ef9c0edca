"""``python -m insightgluon.networks [NAME ...]``: same as ``insightgluon networks``."""
import sys

from insightgluon.cli import run_tool

sys.exit(run_tool("networks"))
