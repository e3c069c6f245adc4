#!/usr/bin/env bash
# Shared logic of scripts/<method>/*.sh (sourced, not run). CoOp's output tree and train.py calls.
#
# Each method script sets TRAINER and the default configs (CFG_B2N, CFG_B2N_IMAGENET, CFG_XD, CFG_FS ...)
# and then calls one of the qp_* functions below with its positional arguments.
#
# Common options (before or after the positional arguments):
#   --data DIR     dataset root (default: $DATA; required)
#   --cfg NAME     trainer config name in configs/trainers/$TRAINER/ (default: $CFG or the method's)
#   --shots K      shots per class (default: $SHOTS or 16)
#   --output DIR   output root (default: $OUTPUT or output, relative to the repository root)
#   --             everything after this is passed to train.py as KEY VALUE opts
# Environment: DATA, CFG, SHOTS, OUTPUT, LOADEP (epoch to test), SEEDS (benchmarks), PYTHON (interpreter).
set -euo pipefail

QP_CALLER_DIR="$(pwd)"
QP_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
QP_PYTHON="${PYTHON:-python}"

qp_die() { echo "error: $*" >&2; exit 2; }

qp_abspath() {  # resolve a path given relative to the caller's directory
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "${QP_CALLER_DIR}/$1" ;;
    esac
}

# qp_parse "$@": sets QP_ARGS (positional), QP_OPTS (pass-through), DATA, CFG_OVERRIDE, SHOTS, OUTPUT
qp_parse() {
    QP_ARGS=()
    QP_OPTS=()
    CFG_OVERRIDE="${CFG:-}"
    SHOTS="${SHOTS:-16}"
    OUTPUT="${OUTPUT:-output}"
    DATA="${DATA:-}"
    while [ $# -gt 0 ]; do
        case "$1" in
            --data) DATA="$2"; shift 2 ;;
            --cfg) CFG_OVERRIDE="$2"; shift 2 ;;
            --shots) SHOTS="$2"; shift 2 ;;
            --output) OUTPUT="$2"; shift 2 ;;
            --) shift; QP_OPTS+=("$@"); break ;;
            *)
                if [[ "$1" == [A-Z]*.* ]]; then QP_OPTS+=("$@"); break; fi  # KEY VALUE opts start
                QP_ARGS+=("$1"); shift ;;
        esac
    done
    [ -n "$DATA" ] || qp_die "no dataset root: set DATA=/path/to/datasets or pass --data DIR"
    DATA="$(qp_abspath "$DATA")"
    [ -d "$DATA" ] || qp_die "dataset root '$DATA' is not a directory (DATA / --data)"
    OUTPUT="$(qp_abspath_repo "$OUTPUT")"
    cd "$QP_REPO"
}

qp_abspath_repo() {  # output paths: relative to the repository root, as CoOp's scripts
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s\n' "${QP_REPO}/$1" ;;
    esac
}

qp_datasets() { (cd "$QP_REPO/configs/datasets" && ls ./*.yaml 2>/dev/null | sed 's|^\./||; s|\.yaml$||' | tr '\n' ' '); }

qp_check_dataset() {
    local name="$1"
    [ -n "$name" ] || qp_die "missing dataset name; valid names: $(qp_datasets)"
    [ -f "$QP_REPO/configs/datasets/${name}.yaml" ] || \
        qp_die "unknown dataset '${name}'; valid names: $(qp_datasets)"
}

qp_check_seed() {
    [[ "${1:-}" =~ ^[0-9]+$ ]] || qp_die "seed must be a non-negative integer, got '${1:-}'"
}

qp_cfg() {  # qp_cfg DEFAULT -> chosen config name, checked
    local cfg="${CFG_OVERRIDE:-$1}"
    [ -f "$QP_REPO/configs/trainers/${TRAINER}/${cfg}.yaml" ] || \
        qp_die "no config configs/trainers/${TRAINER}/${cfg}.yaml; available: $(cd "$QP_REPO/configs/trainers/${TRAINER}" && ls | sed 's/\.yaml$//' | tr '\n' ' ')"
    printf '%s\n' "$cfg"
}

qp_load_epoch() {  # LOADEP env > OPTIM.MAX_EPOCH in the pass-through opts > MAX_EPOCH in the config file
    local cfg="$1" i
    if [ -n "${LOADEP:-}" ]; then printf '%s\n' "$LOADEP"; return; fi
    for ((i = 0; i < ${#QP_OPTS[@]}; i++)); do
        if [ "${QP_OPTS[$i]}" = "OPTIM.MAX_EPOCH" ]; then printf '%s\n' "${QP_OPTS[$((i + 1))]}"; return; fi
    done
    sed -n 's/^[[:space:]]*MAX_EPOCH:[[:space:]]*\([0-9]*\).*/\1/p' "$QP_REPO/configs/trainers/${TRAINER}/${cfg}.yaml" | head -n 1
}

qp_finished() {  # finished: its newest log (a resumed run writes log.txt-<time>) ends with the final evaluation
    local log
    log="$(ls "$1"/log.txt* 2>/dev/null | sort | tail -n 1)"
    [ -n "$log" ] || return 1
    # training runs: an accuracy line after "Finish training"; evaluation-only runs: an accuracy line, no epochs
    awk '/^Finish training/ {f = 1} /^\* accuracy:/ {a = 1; if (f) ok = 1} /^epoch \[/ {e = 1}
         END {exit !(ok || (a && !e))}' "$log"
}

# QP_PLAN=1 (set by quantprompt.grid, which runs these scripts): print what a call would do, run nothing.
# Two tab-separated lines: "qp-plan STATUS DIR NEEDS OUTPUT" (STATUS: finished, unfinished or new; NEEDS: the
# trained model an evaluation loads, or empty) and "qp-cmd" + the train.py command line, run from the repository.
qp_plan() {  # qp_plan STATUS DIR NEEDS CMD...
    printf 'qp-plan\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$OUTPUT"
    shift 3
    printf 'qp-cmd'; printf '\t%s' "$@"; printf '\n'
}

# qp_run DIR [train.py args...]: skip finished runs, resume unfinished ones
qp_run() {
    local dir="$1"; shift
    local status=new resume=()
    if qp_finished "$dir"; then status=finished
    elif [ -d "$dir" ]; then status=unfinished; resume=(--resume "$dir"); fi
    local cmd=("$QP_PYTHON" train.py --root "$DATA" --trainer "$TRAINER" --output-dir "$dir"
               ${resume[@]+"${resume[@]}"} "$@" ${QP_OPTS[@]+"${QP_OPTS[@]}"})
    if [ -n "${QP_PLAN:-}" ]; then qp_plan "$status" "$dir" "" "${cmd[@]}"; return 0; fi
    case "$status" in
        finished) echo "Results are available in ${dir} (so skip this job)"; return 0 ;;
        unfinished) echo "Unfinished run in ${dir}: resuming" ;;
        *) echo "Run this job and save the output to ${dir}" ;;
    esac
    "${cmd[@]}"
}

# qp_eval DIR MODEL_DIR EPOCH [train.py args...]: evaluation-only runs (skipped when finished)
qp_eval() {
    local dir="$1" model_dir="$2" epoch="$3"; shift 3
    local status=new load=() needs=""
    if qp_finished "$dir"; then status=finished; elif [ -d "$dir" ]; then status=unfinished; fi
    if [ "$TRAINER" != "ZeroshotCLIP" ]; then
        needs="$model_dir"
        load=(--model-dir "$model_dir" --load-epoch "$epoch")
    fi
    local cmd=("$QP_PYTHON" train.py --root "$DATA" --trainer "$TRAINER" --output-dir "$dir"
               ${load[@]+"${load[@]}"} --eval-only "$@" ${QP_OPTS[@]+"${QP_OPTS[@]}"})
    if [ -n "${QP_PLAN:-}" ]; then qp_plan "$status" "$dir" "$needs" "${cmd[@]}"; return 0; fi
    if [ "$status" = finished ]; then
        echo "Results are available in ${dir} (so skip this job)"
        return 0
    fi
    echo "Evaluate ${model_dir} (epoch ${epoch}) and save the output to ${dir}"
    [ -z "$needs" ] || [ -d "$model_dir" ] || qp_die "no trained model at ${model_dir}: run the matching *_train.sh first"
    "${cmd[@]}"
}

qp_b2n_cfg() {  # base-to-new config: ImageNet may have its own (CoOp uses 50 epochs there)
    if [ "$1" = "imagenet" ] && [ -n "${CFG_B2N_IMAGENET:-}" ]; then qp_cfg "$CFG_B2N_IMAGENET"; else qp_cfg "$CFG_B2N"; fi
}

# ---- settings ---------------------------------------------------------------------------------------
qp_base2new_train() {  # <dataset> <seed>
    qp_parse "$@"
    local dataset="${QP_ARGS[0]:-}" seed="${QP_ARGS[1]:-}"
    qp_check_dataset "$dataset"; qp_check_seed "$seed"
    local cfg; cfg="$(qp_b2n_cfg "$dataset")"
    local dir="${OUTPUT}/base2new/train_base/${dataset}/shots_${SHOTS}/${TRAINER}/${cfg}/seed${seed}"
    qp_run "$dir" --seed "$seed" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES base
}

qp_base2new_test() {  # <dataset> <seed> [sub: new|base]
    qp_parse "$@"
    local dataset="${QP_ARGS[0]:-}" seed="${QP_ARGS[1]:-}" sub="${QP_ARGS[2]:-new}"
    qp_check_dataset "$dataset"; qp_check_seed "$seed"
    [ "$sub" = "new" ] || [ "$sub" = "base" ] || qp_die "subset must be new or base, got '${sub}'"
    local cfg; cfg="$(qp_b2n_cfg "$dataset")"
    local common="${dataset}/shots_${SHOTS}/${TRAINER}/${cfg}/seed${seed}"
    local epoch; epoch="$(qp_load_epoch "$cfg")"
    qp_eval "${OUTPUT}/base2new/test_${sub}/${common}" "${OUTPUT}/base2new/train_base/${common}" "$epoch" \
        --seed "$seed" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "$SHOTS" DATASET.SUBSAMPLE_CLASSES "$sub"
}

qp_source_train() {  # <seed> [source dataset, default imagenet] ; config $1 of the caller
    local default_cfg="$1"; shift
    qp_parse "$@"
    local seed="${QP_ARGS[0]:-}" dataset="${QP_ARGS[1]:-imagenet}"
    qp_check_seed "$seed"; qp_check_dataset "$dataset"
    local cfg; cfg="$(qp_cfg "$default_cfg")"
    qp_run "${OUTPUT}/${dataset}/${TRAINER}/${cfg}_${SHOTS}shots/seed${seed}" --seed "$seed" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "$SHOTS"
}

qp_target_test() {  # <target dataset> <seed> [source dataset, default imagenet]
    local default_cfg="$1"; shift
    qp_parse "$@"
    local dataset="${QP_ARGS[0]:-}" seed="${QP_ARGS[1]:-}" source="${QP_ARGS[2]:-imagenet}"
    qp_check_dataset "$dataset"; qp_check_seed "$seed"
    local cfg; cfg="$(qp_cfg "$default_cfg")"
    local epoch; epoch="$(qp_load_epoch "$cfg")"
    qp_eval "${OUTPUT}/evaluation/${TRAINER}/${cfg}_${SHOTS}shots/${dataset}/seed${seed}" \
        "${OUTPUT}/${source}/${TRAINER}/${cfg}_${SHOTS}shots/seed${seed}" "$epoch" --seed "$seed" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${cfg}.yaml"
}

qp_fewshot() {  # <dataset> <shots> <seed> ; CoOp's scripts/coop/main.sh tree
    qp_parse "$@"
    local dataset="${QP_ARGS[0]:-}" shots="${QP_ARGS[1]:-}" seed="${QP_ARGS[2]:-}"
    qp_check_dataset "$dataset"; qp_check_seed "$seed"
    [[ "$shots" =~ ^[0-9]+$ ]] && [ "$shots" -ge 1 ] || qp_die "shots must be a positive integer (1 2 4 8 16), got '${shots}'"
    local default_cfg="$CFG_FS"
    if [ "$dataset" = "imagenet" ]; then default_cfg="${CFG_FS_IMAGENET:-$CFG_FS}"
    elif [ "$shots" -le 2 ]; then default_cfg="${CFG_FS_12:-$CFG_FS}"
    elif [ "$shots" -le 8 ]; then default_cfg="${CFG_FS_48:-$CFG_FS}"; fi
    local cfg; cfg="$(qp_cfg "$default_cfg")"
    local nctx="${NCTX:-16}" csc="${CSC:-False}" ctp="${CTP:-end}"
    local node_opts=()
    case "$TRAINER" in
        CoOp|QCoOp|NoiseCoOp|P4Q) node_opts=(TRAINER.COOP.N_CTX "$nctx" TRAINER.COOP.CSC "$csc" TRAINER.COOP.CLASS_TOKEN_POSITION "$ctp") ;;
    esac
    local dir="${OUTPUT}/${dataset}/${TRAINER}/${cfg}_${shots}shots/nctx${nctx}_csc${csc}_ctp${ctp}/seed${seed}"
    if [ "$TRAINER" = "ZeroshotCLIP" ]; then
        dir="${OUTPUT}/${TRAINER}/${cfg}/${dataset}"
    fi
    qp_run "$dir" --seed "$seed" \
        --dataset-config-file "configs/datasets/${dataset}.yaml" \
        --config-file "configs/trainers/${TRAINER}/${cfg}.yaml" \
        DATASET.NUM_SHOTS "$shots" ${node_opts[@]+"${node_opts[@]}"}
}

# qp_benchmark <setting> [datasets...] [options]: the whole grid of one setting for this method, defined and
# run by quantprompt.grid (sequential by default; --jobs N, --launcher slurm, --dry-run: see docs/grid.md).
qp_benchmark() {
    local here; here="$(cd "$1" && pwd)"; shift
    PYTHONPATH="${QP_REPO}${PYTHONPATH:+:${PYTHONPATH}}" exec "$QP_PYTHON" -m quantprompt.grid \
        --prog "$(basename "$here")/benchmark.sh" --scripts "$(dirname "$here")" --methods "$(basename "$here")" "$@"
}
