#!/usr/bin/env bash
# DPN-107 (p107) with plain softmax (loss-type 0) on VGGFace2 (8 GPUs in the 2018 experiments).
# Expected: the 2018 README's VGG2 experiments report r50/VGG2 at LFW 99.7+ / CFP-FF 99.6+ / CFP-FP 97.1+ /
# AgeDB-30 95.7+; DPN-107 softmax was the heavier baseline of the same table (no separate figure kept).
#
#   DATA_DIR=../datasets/faces_vgg2_112x112 GPUS=0,1,2,3,4,5,6,7 recipes/p107_softmax_vgg2.sh [more flags]
#
# The command line of recipes/p107_softmax_vgg2.yml. DATA_DIR, GPUS and PREFIX come from the
# environment (defaults below; GPUS= trains on the CPU, DATA_DIR= on the synthetic faces); flags given
# to the script are passed on and win over the recipe's (e.g. --per-batch-size 64 --dry-run).
set -euo pipefail
DATA_DIR=${DATA_DIR-../datasets/faces_vgg2_112x112}
GPUS=${GPUS-0,1,2,3,4,5,6,7}
PREFIX=${PREFIX-../models/p107-softmax-vgg2/model}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then PYTHON=python; [ -x "$ROOT/.venv/bin/python" ] && PYTHON=$ROOT/.venv/bin/python; fi

exec "$PYTHON" -u "$ROOT/train_softmax.py" \
    --network p107 --loss-type 0 --emb-size 512 --per-batch-size 64 --lr 0.1 --wd 0.0005 \
    --lr-steps 40000,60000,80000 --max-steps 90000 --verbose 2000 --ckpt 3 \
    --target lfw,cfp_fp,agedb_30 \
    ${DATA_DIR:+--data-dir "$DATA_DIR"} ${GPUS:+--gpus "$GPUS"} --prefix "$PREFIX" "$@"
