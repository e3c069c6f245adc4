#!/usr/bin/env bash
# zero-shot CLIP (nothing is trained): trainer and default configs of scripts/zsclip/*.sh (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
TRAINER=ZeroshotCLIP
CFG_B2N=vit_b16
CFG_XD=vit_b16
CFG_FS=rn50
