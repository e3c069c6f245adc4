#!/usr/bin/env bash
# NoiseCoOp (Fig. 2; --cfg ..._noise1e-3 / 1e-1): trainer and default configs of scripts/noisecoop/*.sh (sourced).
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/common.sh"
TRAINER=NoiseCoOp
CFG_B2N=vit_b16_ctxv1_noise1e-2
CFG_B2N_IMAGENET=vit_b16_ep50_ctxv1_noise1e-2
CFG_XD=vit_b16_ep50_ctxv1_noise1e-2
CFG_FS=vit_b16_ctxv1_noise1e-2
