#!/usr/bin/env bash
# MobileNet-v1 (m1, version_multiplier 1.0) with plain softmax (loss-type 0) on MS1M: the fast baseline.
# Expected: no 2018 figure was published for m1/softmax; the combined-margin table's normalised softmax
# (r100, s=64, no margin) reached LFW 99.28 / CFP-FP 88.50 / AgeDB 95.13 — m1 with plain softmax is below that.
#
#   DATA_DIR=../datasets/faces_ms1m_112x112 GPUS=0,1,2,3 recipes/m1_softmax.sh [more flags]
#
# The command line of recipes/m1_softmax.yml. DATA_DIR, GPUS and PREFIX come from the
# environment (defaults below; GPUS= trains on the CPU, DATA_DIR= on the synthetic faces); flags given
# to the script are passed on and win over the recipe's (e.g. --per-batch-size 64 --dry-run).
set -euo pipefail
DATA_DIR=${DATA_DIR-../datasets/faces_ms1m_112x112}
GPUS=${GPUS-0,1,2,3}
PREFIX=${PREFIX-../models/m1-softmax-ms1m/model}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then PYTHON=python; [ -x "$ROOT/.venv/bin/python" ] && PYTHON=$ROOT/.venv/bin/python; fi

exec "$PYTHON" -u "$ROOT/train_softmax.py" \
    --network m1 --loss-type 0 --emb-size 512 --per-batch-size 128 --lr 0.1 --wd 0.0005 \
    --lr-steps 40000,60000,80000 --max-steps 90000 --verbose 2000 --ckpt 3 \
    ${DATA_DIR:+--data-dir "$DATA_DIR"} ${GPUS:+--gpus "$GPUS"} --prefix "$PREFIX" "$@"
