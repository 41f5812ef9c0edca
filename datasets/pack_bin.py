"""Legacy script path: same as `insightgluon pack-bin` (see `--help`)."""
import sys

from insightgluon.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("pack_bin"))
