#!/usr/bin/env bash
# One command to check the project on a CUDA machine (minutes on one GPU: docs/scale.md). Every step
# runs even if an earlier one fails (GPU time is scarce: one failure should not cost the other
# figures); the failed steps are listed at the end and the exit status is then 1. In this order:
#   (c) the CUDA tests (tests/test_cuda.py: buffers on the GPU, float64 counts over NCCL, scores);
#   (a) the embedded LDA config end to end (train + LVIS evaluation) on the GPU;
#   (b) the LVIS-shaped rehearsal (tools/measure.py step): R-50 FPN, 1,203 classes, 800 px,
#       2 images per GPU (the configs' batch of 8 on 4 GPUs), baseline and LDA interleaved, with
#       and without mixed precision (SOLVER.AMP.ENABLED): iterations/s, their ratio, peak GPU
#       memory, non-finite losses; and the box predictors alone, every method against the baseline;
#   (c) the CUDA tests (tests/test_cuda.py: buffers on the GPU, float64 counts over NCCL, scores).
#
#   bash tools/gpu_check.sh [OUT_DIR]            # on a machine with CUDA; fails without it
#   bash tools/gpu_check.sh --dry-run [OUT_DIR]  # the same steps, tiny, on the CPU (the test suite runs it)
#
# Everything it prints is also written to OUT_DIR/gpu_check.log (default: ./output/gpu_check).
set -euo pipefail

DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT="${1:-output/gpu_check}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
LOG="$OUT/gpu_check.log"
: > "$LOG"
cd "$ROOT"

say() { echo "[gpu_check] $*" | tee -a "$LOG"; }
FAILED=()
run() {  # runs one step; a failure is recorded (and reported at the end), not fatal
  say "\$ $*"
  local t0=$SECONDS
  if "$@" 2>&1 | tee -a "$LOG"; then
    say "   ok ($((SECONDS - t0)) s)"
  else
    say "   FAILED ($((SECONDS - t0)) s): $*"
    FAILED+=("$*")
  fi
}

if [[ $DRY == 0 ]]; then
  if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    say "FAILED: CUDA is not available (torch.cuda.is_available() is False): this check needs a GPU."
    say "        On a CPU machine, 'bash tools/gpu_check.sh --dry-run' rehearses the script itself."
    exit 2
  fi
  DEVICE=cuda
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee -a "$LOG" || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0))' | tee -a "$LOG"
  EMB_OPTS=(MODEL.DEVICE cuda)
  REH=(--device cuda --rounds 20 --warmup 3 --size 1k --test-images 4)
  REH_AMP=("${REH[@]}" --methods baseline lda)
  PRED=(--device cuda --rounds 30)
else
  DEVICE=cpu
  say "DRY RUN on the CPU: tiny sizes, the figures mean nothing"
  EMB_OPTS=(MODEL.DEVICE cpu SOLVER.MAX_ITER 2 SOLVER.WARMUP_ITERS 1 SOLVER.STEPS "()" \
            SOLVER.IMS_PER_BATCH 2 DATALOADER.NUM_WORKERS 0 TEST.DETECTIONS_PER_IMAGE 20 \
            MODEL.RPN.POST_NMS_TOPK_TEST 20 DATASETS.TEST "('lvis_embedded_val',)")
  # the mask head's convolutions are most of a step at these sizes (its 1,203-way predictor
  # over 28x28 per ROI above all): one narrow conv, few ROIs, few detections (the GPU run keeps
  # the configs' head)
  TINY_HEADS=(MODEL.RPN.POST_NMS_TOPK_TRAIN 64 MODEL.RPN.POST_NMS_TOPK_TEST 20
              MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE 16 MODEL.ROI_MASK_HEAD.NUM_CONV 1
              MODEL.ROI_MASK_HEAD.CONV_DIM 16 TEST.DETECTIONS_PER_IMAGE 10)
  REH=(--device cpu --rounds 1 --warmup 0 --size tiny --test-images 1 --min-size 160 --max-size 224
       --threads 1 --opts "${TINY_HEADS[@]}")
  # mixed precision on a CPU is bfloat16, whose convolutions run far slower than float32
  # without hardware support (docs/scale.md, "GPU check"): the dry run takes that
  # step at the smallest size and for LDA alone (its loss under autocast is what the step is
  # there for; the baseline's is detectron2's own AMP path, interleaved on the GPU)
  REH_AMP=(--device cpu --rounds 1 --warmup 0 --size tiny --test-images 1 --min-size 32 --max-size 48
           --threads 1 --methods lda --opts "${TINY_HEADS[@]}")
  PRED=(--device cpu --rounds 1 --warmup 0 --threads 1 --methods baseline lda)
fi
export DETECTRON2_DATASETS="${DETECTRON2_DATASETS:-$OUT/datasets}"
CACHE="$OUT/lvis_shaped"

say "(c) CUDA tests"
if [[ $DRY == 0 ]]; then
  run "$PY" -m pytest -q -rs tests/test_cuda.py
else  # no CUDA: they must all be skipped, with their reason
  run "$PY" -m pytest -q -rs tests/test_cuda.py -p no:cacheprovider
fi
say "(a) embedded LDA config, train + evaluation on $DEVICE"
run "$PY" train_net.py --config-file configs/Embedded/lda_mask_rcnn_R_18_FPN_cpu_embedded.yaml \
  "${EMB_OPTS[@]}" OUTPUT_DIR "$OUT/embedded_lda"

say "(b) LVIS-shaped rehearsal, baseline and LDA, float32 then mixed precision"
run "$PY" tools/measure.py step --methods baseline lda --cache "$CACHE" "${REH[@]}"
run "$PY" tools/measure.py step --amp --cache "$CACHE" "${REH_AMP[@]}"
say "(b) box predictors alone, every method against the baseline"
run "$PY" tools/measure.py predictor "${PRED[@]}"

if (( ${#FAILED[@]} )); then
  say "FAILED: ${#FAILED[@]} step(s) failed:"
  for f in "${FAILED[@]}"; do say "  $f"; done
  say "log in $LOG"
  exit 1
fi
say "done: log in $LOG"
