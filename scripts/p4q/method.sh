#!/usr/bin/env bash
# P4Q (W8A8 PTQ CLIP + CoOp prompts + 4-bit adapter; --cfg vit_b32_ep50_w4 for W4A8): trainer and default configs of scripts/p4q/*.sh (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
TRAINER=P4Q
CFG_B2N=vit_b16_ctxv1
CFG_B2N_IMAGENET=vit_b16_ep50_ctxv1
CFG_XD=vit_b16_ep50_ctxv1
CFG_FS=vit_b32
CFG_FS_IMAGENET=vit_b32_ep50
