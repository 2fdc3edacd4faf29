#!/usr/bin/env bash
# One device call that shares the GPU between the reproduction and the correctness checks:
# build the kernels, then run scripts/gpu_reproduce.sh in the background (rows in priority order)
# while scripts/gpu_check.sh runs the CUDA tests and the bf16 flake loop and `pytest benchmarks/
# --benchmark-only` runs for pass/fail. The benchmark *timings* of such a call are not valid (the
# GPU is shared with training); only its correctness results are.
#
#   BUDGET=400 JOBS=6 CHECK=1 bash scripts/gpu_session.sh          (OUT: the device's output folder)
#   ROW_LIST="ours;w/o Gaussian kernel" SEEDS=0 START_BY=300 BUDGET=400 CHECK=0 bash scripts/gpu_session.sh
#
# Everything is packed into $OUT/session.tgz plus a few top-level logs: the device returns at most
# 8 files. A call that runs past its limit loses the machine and the run cache, so the defaults
# leave ~150 s of the 600 s limit for the build, the tables and the packing.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT: the output folder}"
export ORSTER4D_BUILD_DIR=$PWD/build/gpu-jit MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site || exit 1
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$OUT/install.log" 2>&1
t0=$(date +%s)
python3 -m orster4d.build --cuda > "$OUT/build.log" 2>&1; echo "build rc=$? $(( $(date +%s) - t0 )) s"
ROWS=("w/o Orster" "lambda_o = 0" "lambda_o = 1" ours "w/o Gaussian kernel" "w/o spatial attention"
      "w/o temporal attention" "w/o consistency stage" "w/o preliminary 4D" "w/o disentangling" "w/o spatial channel"
      "w/o temporal channel" "construction w/o spatial prior tokens" "construction w/o temporal prior tokens"
      "w/o construction training")
# ROW_LIST="ours;w/o Gaussian kernel;..." (';'-separated) replaces that order, e.g. to leave out the rows a
# committed report already holds (a fresh machine would train them again); SEEDS as gpu_reproduce.sh's.
[ -n "${ROW_LIST:-}" ] && IFS=';' read -r -a ROWS <<< "$ROW_LIST"
SKIP_BUILD=1 BUDGET_S=${BUDGET:-400} JOBS=${JOBS:-6} bash scripts/gpu_reproduce.sh "$OUT/repro" "${ROWS[@]}" \
  > "$OUT/repro_driver.log" 2>&1 &
sleep 20  # the reproduction's own install first
if [ "${CHECK:-1}" = 1 ]; then
  FLAKE_RUNS=${FLAKE_RUNS:-12} timeout 330 bash scripts/gpu_check.sh "$OUT/check" tests,flake > "$OUT/check_driver.log" 2>&1
  echo "check rc=$?"; grep -E "=== |passed|failed|bf16" "$OUT/check_driver.log" | tail -12
  left=$(( 480 - $(date +%s) + t0 ))
  [ $left -gt 30 ] && { timeout $left python3 -m pytest benchmarks/ --benchmark-only -v -ra -p no:cacheprovider \
    --benchmark-json "$OUT/check/benchonly.json" > "$OUT/check/benchonly.log" 2>&1; echo "benchonly rc=$?"; \
    tail -8 "$OUT/check/benchonly.log"; }
fi
wait; tail -8 "$OUT/repro_driver.log"
tar czf "$OUT/session.tgz" -C "$OUT" repro check 2>/dev/null; rm -rf "$OUT/repro" "$OUT/check"
ls -la "$OUT"; echo "session: $(( $(date +%s) - t0 )) s"
