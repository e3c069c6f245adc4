#!/usr/bin/env bash
# MaPLe: trainer and default configs of scripts/maple/*.sh (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
TRAINER=MaPLe
CFG_B2N=vit_b16_c2_ep5_batch4_2ctx
CFG_XD=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
CFG_FS=vit_b16_c2_ep5_batch4_2ctx
