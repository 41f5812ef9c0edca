"""Legacy script path: same as `insightgluon synth` (see `--help`)."""
import sys

from insightgluon.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("synth"))
