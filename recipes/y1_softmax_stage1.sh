#!/usr/bin/env bash
# MobileFaceNet (y1), stage 1 of 2: softmax pre-training. The maintainer (issue #387): MobileFaceNet
# "requires training by softmax loss firstly"; ArcFace from scratch tends to stall at acc=0 / NaN.
# Then stage 2: recipes/y1_arcface_stage2.yml (ArcFace from this model).
#
#   DATA_DIR=../datasets/faces_ms1m_112x112 GPUS=0,1,2,3 recipes/y1_softmax_stage1.sh [more flags]
#
# The command line of recipes/y1_softmax_stage1.yml. DATA_DIR, GPUS and PREFIX come from the
# environment (defaults below; GPUS= trains on the CPU, DATA_DIR= on the synthetic faces); flags given
# to the script are passed on and win over the recipe's (e.g. --per-batch-size 64 --dry-run).
set -euo pipefail
DATA_DIR=${DATA_DIR-../datasets/faces_ms1m_112x112}
GPUS=${GPUS-0,1,2,3}
PREFIX=${PREFIX-../models/y1-softmax/model}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then PYTHON=python; [ -x "$ROOT/.venv/bin/python" ] && PYTHON=$ROOT/.venv/bin/python; fi

exec "$PYTHON" -u "$ROOT/train_softmax.py" \
    --network y1 --loss-type 0 --emb-size 128 --per-batch-size 128 --lr 0.1 --wd 0.00004 \
    --fc7-wd-mult 10 --lr-steps 40000,60000,80000 --max-steps 90000 --verbose 2000 --ckpt 2 \
    ${DATA_DIR:+--data-dir "$DATA_DIR"} ${GPUS:+--gpus "$GPUS"} --prefix "$PREFIX" "$@"
