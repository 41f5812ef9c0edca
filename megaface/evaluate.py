#!/usr/bin/env python
"""Legacy entry point: same as `insightgluon megaface evaluate ...`."""
import sys

from insightgluon.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("megaface", ["evaluate", *sys.argv[1:]]))
