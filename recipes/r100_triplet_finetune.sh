#!/usr/bin/env bash
# Triplet fine-tuning (loss-type 12) of an ArcFace r100: identity-balanced batches of 5 images per identity,
# semi-hard negatives, alpha 0.3, small lr, no lr steps (the legacy train_triplet.py defaults, ckpt 2).
# Expected: the 2018 README reports triplet fine-tuning as a small gain over the ArcFace starting point
# (r100 ArcFace: LFW 99.80+ / CFP-FP 94.0+ / AgeDB-30 97.90+); no separate table was published.
#
#   DATA_DIR=../datasets/faces_ms1m_112x112 GPUS=0,1,2,3 PRETRAINED=../models/r100-arcface-ms1m/model,1 recipes/r100_triplet_finetune.sh [more flags]
#
# The command line of recipes/r100_triplet_finetune.yml. DATA_DIR, GPUS, PREFIX and PRETRAINED come from the
# environment (defaults below; GPUS= trains on the CPU, DATA_DIR= on the synthetic faces); flags given
# to the script are passed on and win over the recipe's (e.g. --per-batch-size 64 --dry-run).
set -euo pipefail
DATA_DIR=${DATA_DIR-../datasets/faces_ms1m_112x112}
GPUS=${GPUS-0,1,2,3}
PREFIX=${PREFIX-../models/r100-triplet/model}
PRETRAINED=${PRETRAINED-../models/r100-arcface-ms1m/model,1}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then PYTHON=python; [ -x "$ROOT/.venv/bin/python" ] && PYTHON=$ROOT/.venv/bin/python; fi

exec "$PYTHON" -u "$ROOT/train_softmax.py" \
    --network r100 --loss-type 12 --images-per-identity 5 --triplet-alpha 0.3 --per-batch-size 150 \
    --lr 0.005 --wd 0.0005 --lr-steps 1000000000 --max-steps 40000 --verbose 2000 --ckpt 2 \
    ${DATA_DIR:+--data-dir "$DATA_DIR"} ${GPUS:+--gpus "$GPUS"} --prefix "$PREFIX" \
    ${PRETRAINED:+--pretrained "$PRETRAINED"} "$@"
