#!/usr/bin/env bash
# LResNet100E-IR + ArcFace (loss-type 4, s=64, m=0.5) on MS1M (faces_emore / faces_ms1m, 85,742 ids).
# 4 GPUs x 128 per device = global batch 512, so the legacy default steps 100k/140k/160k apply unscaled.
# Expected (README 2018, r100/MS1M):      LFW 99.80+   CFP-FP 94.0+   AgeDB-30 97.90+   MegaFace1M rank-1 98.0+
# Cleaned-overlap table (r100, ArcFace):  LFW 99.83    CFP-FP 94.04   AgeDB-30 98.08
#
#   DATA_DIR=../datasets/faces_ms1m_112x112 GPUS=0,1,2,3 recipes/r100_arcface_ms1m.sh [more flags]
#
# The command line of recipes/r100_arcface_ms1m.yml. DATA_DIR, GPUS and PREFIX come from the
# environment (defaults below; GPUS= trains on the CPU, DATA_DIR= on the synthetic faces); flags given
# to the script are passed on and win over the recipe's (e.g. --per-batch-size 64 --dry-run).
set -euo pipefail
DATA_DIR=${DATA_DIR-../datasets/faces_ms1m_112x112}
GPUS=${GPUS-0,1,2,3}
PREFIX=${PREFIX-../models/r100-arcface-ms1m/model}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -z "${PYTHON:-}" ]; then PYTHON=python; [ -x "$ROOT/.venv/bin/python" ] && PYTHON=$ROOT/.venv/bin/python; fi

exec "$PYTHON" -u "$ROOT/train_softmax.py" \
    --network r100 --loss-type 4 --margin-s 64 --margin-m 0.5 --emb-size 512 --per-batch-size 128 \
    --lr 0.1 --wd 0.0005 --mom 0.9 --lr-steps 100000,140000,160000 --max-steps 180000 \
    --verbose 2000 --ckpt 3 --target lfw,cfp_fp,agedb_30 \
    ${DATA_DIR:+--data-dir "$DATA_DIR"} ${GPUS:+--gpus "$GPUS"} --prefix "$PREFIX" "$@"
