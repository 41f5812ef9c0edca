#!/usr/bin/env python
"""Legacy entry point: ``python -u train_softmax.py --network r100 --loss-type 4 ...``.

Same flags as the 2018 InsightFace script; see ``insightgluon train --help``.
"""
import sys

from insightgluon.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("train"))
