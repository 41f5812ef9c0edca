"""Legacy script path: same as `insightgluon inspect` (see `--help`)."""
import os
import sys

# Run as a script, this directory comes first on sys.path and this file would
# shadow the standard library's ``inspect`` module that NumPy and MXNet import.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from insightgluon.cli import run_tool  # noqa: E402

if __name__ == "__main__":
    sys.exit(run_tool("inspect"))
