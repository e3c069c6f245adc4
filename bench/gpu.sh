#!/usr/bin/env bash
# The GPU check in one call: the CUDA tests, then bench/train.py, bench/eval.py and bench/quant.py on CUDA at the
# shapes users meet (ViT-B/16 widths, 1,000 classes, batch 32, fp16). At most ~8 minutes on one GPU.
#
#   bash bench/gpu.sh            # on a machine with a CUDA device (exits 2 without one)
#   bash bench/gpu.sh --smoke    # plumbing check on a CPU: the same steps at tiny shapes (figures meaningless)
#
# Prints each bench's `name: value` lines, then all figures again under "figures:" with the targets
# (train_step_speedup_coop_1000_cuda >= 2, train_peak_mem_ratio_coop_1000 <= 0.5, the quantization hook <= 3 %
# of a QCoOp step). Writes gpu.log and figures.txt under $OUT when it is set (else only to stdout).
# Exit status: 0 when every step passed; 1 when a test failed or a bench failed or ran out of its time.
# PYTHON picks the interpreter (default: python).
set -uo pipefail

cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PY="${PYTHON:-python}"
SMOKE=0
case "${1:-}" in
  "") ;;
  --smoke) SMOKE=1 ;;
  *) echo "bench/gpu.sh: unknown argument '$1' (use no argument on a GPU machine, or --smoke on a CPU)" >&2; exit 2 ;;
esac

LOG=/dev/null
FIGS="$(mktemp)"
STEP_OUT="$(mktemp)"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT" || { echo "bench/gpu.sh: cannot create OUT=$OUT" >&2; exit 2; }
  LOG="$OUT/gpu.log"
  : > "$LOG"
fi
say() { echo "$*" | tee -a "$LOG"; }

if [ "$SMOKE" = 0 ]; then
  if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    say "bench/gpu.sh: no CUDA device (torch.cuda.is_available() is False); on a CPU run: bash bench/gpu.sh --smoke"
    exit 2
  fi
  "$PY" -c "import torch; p = torch.cuda.get_device_properties(0); print(f'GPU: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, CUDA {torch.version.cuda}')" 2>&1 | tee -a "$LOG"
  DEVICE=cuda
  TRAIN_ARGS=(--device cuda --precision fp16 --text-layers 12 --image-size 224 --batch-size 32
              --train coop:1000,qcoop:1000 --eval coop:1000 --repeats 3 --overhead-classes 1000
              --overhead-repeats 5 --figure-suffix _cuda)
  EVAL_ARGS=(--clip vitb16-random --device cuda --precision fp16 --classes 1000 --images 256 --batch-size 32
             --cocoop-images 4 --repeats 3)
  QUANT_ARGS=(--device cuda --repeats 2)
  LIMITS=(220 90 60 90)    # seconds: tests, train, eval, quant (+ ~20 s start-up: within 8 minutes)
else
  say "bench/gpu.sh --smoke: the steps at tiny shapes on the CPU (plumbing only; the figures mean nothing)"
  DEVICE=cpu
  TRAIN_ARGS=(--device cpu --text-layers 1 --batch-size 2 --train coop:10,qcoop:10 --eval coop:10 --repeats 1
              --overhead-classes 10 --overhead-repeats 1 --eval-images 2 --figure-suffix _cpu)
  EVAL_ARGS=(--device cpu --classes 10 --images 4 --batch-size 2 --cocoop-images 1 --repeats 1)
  QUANT_ARGS=(--device cpu --smoke)
  LIMITS=(240 120 120 120)
fi

FAILED=()
step() {  # step NAME LIMIT CMD...: run with a time limit, log, keep its `name: value` lines
  local name="$1" limit="$2"; shift 2
  say ""
  say "== $name (limit ${limit} s): $*"
  local start=$SECONDS
  : > "$STEP_OUT"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG" "$STEP_OUT"
  local rc=${PIPESTATUS[0]}
  grep -E '^[a-z][a-z0-9_.]*: [-0-9.eE+naif]+$' "$STEP_OUT" >> "$FIGS"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    say "== $name: ran out of its ${limit} s"
    FAILED+=("$name (time)")
  elif [ "$rc" != 0 ]; then
    say "== $name: failed (exit $rc)"
    FAILED+=("$name")
  else
    say "== $name: ok in $((SECONDS - start)) s"
  fi
}

# 1. the CUDA tests (on a CPU they are collected and skipped with their reason: the marker is what --smoke checks)
step "cuda tests" "${LIMITS[0]}" "$PY" -m pytest -q -m cuda -p no:cacheprovider tests
# 2-4. the benches
step "bench/train.py" "${LIMITS[1]}" "$PY" bench/train.py "${TRAIN_ARGS[@]}"
step "bench/eval.py" "${LIMITS[2]}" "$PY" bench/eval.py "${EVAL_ARGS[@]}"
step "bench/quant.py" "${LIMITS[3]}" "$PY" bench/quant.py "${QUANT_ARGS[@]}"

say ""
say "figures: ($DEVICE, $(date -u +%Y-%m-%dT%H:%MZ))"
tee -a "$LOG" < "$FIGS"
if [ -n "${OUT:-}" ]; then cp "$FIGS" "$OUT/figures.txt"; fi
if [ "$SMOKE" = 0 ]; then
  "$PY" - "$FIGS" <<'EOF' 2>&1 | tee -a "$LOG"
import sys
figs = {}
for line in open(sys.argv[1], encoding="utf-8"):
    name, _, value = line.partition(": ")
    try:
        figs[name.strip()] = float(value)
    except ValueError:
        pass
targets = [("train_step_speedup_coop_1000_cuda", ">=", 2.0), ("train_peak_mem_ratio_coop_1000", "<=", 0.5),
           ("train_step_overhead_qcoop_vs_coop_cuda", "<=", 3.0)]
for name, op, bound in targets:
    value = figs.get(name)
    verdict = "missing" if value is None else ("met" if (value >= bound if op == ">=" else value <= bound) else "missed")
    print(f"target {name} {op} {bound}: {value if value is not None else '-'} ({verdict})")
EOF
fi
rm -f "$FIGS" "$STEP_OUT"
if [ "${#FAILED[@]}" -gt 0 ]; then
  say "bench/gpu.sh: FAILED: ${FAILED[*]}"
  exit 1
fi
say "bench/gpu.sh: all steps passed"
