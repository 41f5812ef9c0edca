"""Legacy entry point: ``python align/align_dataset.py --input DIR --output DIR [--layout ...]``.

Same as ``insightgluon align``; covers the 2018 align_lfw / align_megaface /
align_facescrub / align_dataset_mtcnn scripts through ``--layout``.
"""
import sys

from insightgluon.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool("align"))
