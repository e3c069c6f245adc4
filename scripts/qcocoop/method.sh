#!/usr/bin/env bash
# QCoCoOp: trainer and default configs of scripts/qcocoop/*.sh (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
TRAINER=QCoCoOp
CFG_B2N=vit_b16_c4_ep10_batch1_ctxv1
CFG_XD=vit_b16_c4_ep10_batch1_ctxv1
CFG_FS=vit_b16_c4_ep10_batch1_ctxv1
