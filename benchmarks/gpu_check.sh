#!/usr/bin/env bash
# Prepared GPU check for issue 14: fp16 ViT-B/32 image encoding, model-only (goal >= 15,000 img/s)
# and end-to-end from JPEG bytes (goal >= 4,000 img/s). One call, about 8 minutes; every stage in
# its own process under its own time limit, so a failure or hang in one approach leaves the others.
#
#   bash benchmarks/gpu_check.sh                                   # on the GPU machine; writes $OUT
#   bash benchmarks/gpu_check.sh --device cpu --tiny --seconds 0.2 # dry run here (tests/test_gpu_check.py)
#
# Writes $OUT/results.json, $OUT/results.md (the table), $OUT/log.txt and $OUT/nvidia-smi.txt
# (OUT defaults to /tmp/cir-gpu-check/out). Extra arguments go to every stage (benchmarks/gpu_check.py).
# GPU_CHECK_BUDGET (seconds, default 500) caps the whole script; stages left when it runs out are
# reported as not run. GPU_CHECK_STAGES="prepare torch compile" runs only those (a partial rerun).
set -u
cd "$(dirname "$0")/.."
WORK=${GPU_CHECK_WORK:-/tmp/cir-gpu-check}
OUT=${OUT:-$WORK/out}
BUDGET=${GPU_CHECK_BUDGET:-500}
PY=${PYTHON:-python3}
STAGE_ARGS=("$@")
mkdir -p "$OUT" "$WORK/parts"
rm -f "$WORK"/parts/*  # the model, the export and the JPEGs stay for a rerun on the same machine
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1  # nothing outside the GPU machine can be reached
LOG=$OUT/log.txt
START=$(date +%s)
: >"$LOG"

check() { "$PY" benchmarks/gpu_check.py "$@" --work "$WORK" --out "$OUT" ${STAGE_ARGS[@]+"${STAGE_ARGS[@]}"}; }
report() { check report >>"$LOG" 2>&1 || echo "report failed (rc $?)" >>"$LOG"; }

wanted() { [ -z "${GPU_CHECK_STAGES:-}" ] || [[ " $GPU_CHECK_STAGES " == *" $1 "* ]]; }

stage() {  # stage NAME LIMIT_SECONDS: run it within what is left of the budget, then refresh the report
    local name=$1 limit=$2 left rc
    wanted "$name" || return 0
    left=$((BUDGET - ($(date +%s) - START) - 10))
    if [ "$left" -lt 15 ]; then
        echo "== $name: not run, the budget is spent" | tee -a "$LOG"
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (limit ${limit}s, at $(($(date +%s) - START))s)" | tee -a "$LOG"
    timeout -k 5 "$limit" "$PY" benchmarks/gpu_check.py "$name" --work "$WORK" --out "$OUT" ${STAGE_ARGS[@]+"${STAGE_ARGS[@]}"} >>"$LOG" 2>&1
    rc=$?
    echo "$rc" >"$WORK/parts/$name.rc"
    echo "== $name: exit $rc" | tee -a "$LOG"
    report
}

(nvidia-smi || echo "no nvidia-smi") >"$OUT/nvidia-smi.txt" 2>&1
stage env 60
stage prepare 120
# The ONNX export runs on the CPU beside the GPU-bound stages; the CPU decode pool and ONNX Runtime wait for it.
wanted export && (
    timeout -k 5 300 nice -n 10 "$PY" benchmarks/gpu_check.py export --work "$WORK" --out "$OUT" ${STAGE_ARGS[@]+"${STAGE_ARGS[@]}"} \
        >"$WORK/export.log" 2>&1
    echo "$?" >"$WORK/parts/export.rc"
) &
EXPORT_PID=$!
stage torch 150
stage e2e_gpu 120
stage compile 240
stage cudagraph 90
if wanted export; then
    wait "$EXPORT_PID"
    { echo "== export (background): exit $(cat "$WORK/parts/export.rc")"; cat "$WORK/export.log"; } >>"$LOG"
fi
report
stage e2e_cpu 120
stage ort 150
stage trt 200
report
echo "== done in $(($(date +%s) - START))s" | tee -a "$LOG"
cat "$OUT/results.md"
