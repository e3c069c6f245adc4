#!/usr/bin/env bash
# QCoOp (1 bit; --cfg vit_b16_ctxv1_b2 / _b4 for Table 6): trainer and default configs of scripts/qcoop/*.sh (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
TRAINER=QCoOp
CFG_B2N=vit_b16_ctxv1
CFG_B2N_IMAGENET=vit_b16_ep50_ctxv1
CFG_XD=vit_b16_ep50_ctxv1
CFG_FS=rn50
CFG_FS_12=rn50_ep50
CFG_FS_48=rn50_ep100
CFG_FS_IMAGENET=rn50_ep50
