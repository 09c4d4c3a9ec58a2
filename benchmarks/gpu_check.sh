#!/usr/bin/env bash
# The GPU check of issue 17, in one run on a machine with one NVIDIA GPU (under 8 minutes):
#   1. the gpu-marked tests (python3 -m pytest -m gpu tests), their log kept;
#   2. benchmarks/gpu_check.py --device cuda: ONE table -- rnnkit vs hand-written torch.nn
#      training, bf16/fp16 speed-ups, the compiled cells path, MinGRU vs cuDNN GRU, 1 vs 1,024
#      generation streams, and a 240 s Tiny Shakespeare run of the gpu preset scored by
#      `rnnkit eval` -- each figure with its target and PASS/MISS.
# Runs from the source tree with the system Python (no install, no network):
#   bash benchmarks/gpu_check.sh [OUT_DIR]       # OUT_DIR: $1, else $OUT, else ./gpu_check_out
# Everything it writes goes under OUT_DIR: gpu_tests.log, gpu_check.md, gpu_check.json,
# gpu_check.log, train.log and the run (run/: ~0.4 GB of checkpoints; RUN_DIR puts it elsewhere).
# Time caps: TESTS_CAP seconds for the tests (default 75), FIGURES_BUDGET for the figures
# (default 120: no section starts after it), MAX_TIME for the run (default 240). PYTHON picks
# the interpreter (default python3). A dry run of the whole script without a GPU:
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_QUICK=1 bash benchmarks/gpu_check.sh /tmp/gpu_check_dry
set -euo pipefail

cd "$(dirname "$0")/.."
out_dir="${1:-${OUT:-./gpu_check_out}}"
mkdir -p "$out_dir"
python="${PYTHON:-python3}"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

echo "== gpu_check: $(date -u +%FT%TZ), output in $out_dir"
"$python" -c 'import sys, torch; print("python", sys.version.split()[0], "| torch",
  torch.__version__, "| CUDA", torch.version.cuda)'

echo "== 1. gpu-marked tests (at most ${TESTS_CAP:-75} s)"
tests_status=0
timeout -k 10 "${TESTS_CAP:-75}" "$python" -m pytest -q -m gpu -p no:cacheprovider \
  --continue-on-collection-errors -rfEs --durations=10 tests >"$out_dir/gpu_tests.log" 2>&1 ||
  tests_status=$?
tail -n 25 "$out_dir/gpu_tests.log"
echo "pytest exit status: $tests_status (124: stopped at the time cap)"

echo "== 2. figures and the gpu preset's run"
"$python" benchmarks/gpu_check.py --device "${GPU_CHECK_DEVICE:-cuda}" ${GPU_CHECK_QUICK:+--quick} --out "$out_dir" \
  --figures-budget "${FIGURES_BUDGET:-120}" --max-time "${MAX_TIME:-240}" \
  --run-dir "${RUN_DIR:-$out_dir/run}" \
  --tests-log "$out_dir/gpu_tests.log" --tests-status "$tests_status" \
  2>&1 | tee "$out_dir/gpu_check.log"
