#!/usr/bin/env bash
# QMaPLe (4 bit; --cfg ..._b1 / _b2): trainer and default configs of scripts/qmaple/*.sh (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
TRAINER=QMaPLe
CFG_B2N=vit_b16_c2_ep5_batch4_2ctx
CFG_XD=vit_b16_c2_ep5_batch4_2ctx_cross_datasets
CFG_FS=vit_b16_c2_ep5_batch4_2ctx
