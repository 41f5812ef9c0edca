#!/usr/bin/env bash
# MobileFaceNet (y1), stage 2 of 2: ArcFace fine-tuning from the softmax model of stage 1
# (pretrained: prefix,N of the stage-1 checkpoint you pick; fc7 is re-initialised only if shapes differ).
# Expected (issue #214, MobileFaceNet two-stage): LFW 99.50  CFP-FP 88.94  AgeDB-30 95.91
#
#   DATA_DIR=../datasets/faces_ms1m_112x112 GPUS=0,1,2,3 PRETRAINED=../models/y1-softmax/model,45 recipes/y1_arcface_stage2.sh [more flags]
#
# The command line of recipes/y1_arcface_stage2.yml. DATA_DIR, GPUS, PREFIX and PRETRAINED come from the
# environment (defaults below; GPUS= trains on the CPU, DATA_DIR= on the synthetic faces); flags given
# to the script are passed on and win over the recipe's (e.g. --per-batch-size 64 --dry-run).
set -euo pipefail
DATA_DIR=${DATA_DIR-../datasets/faces_ms1m_112x112}
GPUS=${GPUS-0,1,2,3}
PREFIX=${PREFIX-../models/y1-arcface/model}
PRETRAINED=${PRETRAINED-../models/y1-softmax/model,45}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then PYTHON=python; [ -x "$ROOT/.venv/bin/python" ] && PYTHON=$ROOT/.venv/bin/python; fi

exec "$PYTHON" -u "$ROOT/train_softmax.py" \
    --network y1 --loss-type 4 --margin-s 64 --margin-m 0.5 --emb-size 128 --per-batch-size 128 \
    --lr 0.1 --wd 0.00004 --fc7-wd-mult 10 --lr-steps 120000,180000,200000 --max-steps 210000 \
    --verbose 2000 --ckpt 3 \
    ${DATA_DIR:+--data-dir "$DATA_DIR"} ${GPUS:+--gpus "$GPUS"} --prefix "$PREFIX" \
    ${PRETRAINED:+--pretrained "$PRETRAINED"} "$@"
