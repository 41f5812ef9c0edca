#!/usr/bin/env python
"""Legacy entry point: same as `insightgluon megaface remove-noises ...`."""
import sys

from insightgluon.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("megaface", ["remove-noises", *sys.argv[1:]]))
