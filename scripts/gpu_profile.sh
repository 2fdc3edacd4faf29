#!/usr/bin/env bash
# One device call that finds where the kernels' time goes (no peers, no plots): build, the CUDA tests,
# benchmarks.kernel_split (timed variants of the HexPlane and rasterizer ops and of a construct step),
# benchmarks.step_split (torch.profiler split of the rasterizer call and of one construct step, with
# Chrome traces), Nsight Compute on the compositing backward where the machine's
# runtime lets ncu read counters, and the bf16 attention flake loop; a step starts only while time is
# left (DEADLINE seconds from the start, default 520).
#
#   bash scripts/gpu_profile.sh            (OUT: the device's output folder; everything is packed
#                                           into $OUT/profile.tgz, the device returns at most 8 files)
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?OUT: the output folder}"
D=$OUT/profile; mkdir -p "$D"
export ORSTER4D_BUILD_DIR=$PWD/build/gpu-jit MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0 PYTHONUNBUFFERED=1
t0=$(date +%s); DEADLINE=${DEADLINE:-520}
left() { echo $(( DEADLINE - $(date +%s) + t0 )); }
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$D/install.log" 2>&1
step() {  # step <name> <timeout> <command...>
  local name=$1 lim=$2; shift 2
  local l; l=$(left); [ "$l" -lt 20 ] && { echo "=== $name: skipped (no time left)"; return; }
  [ "$lim" -gt "$l" ] && lim=$l
  local s=$(date +%s); timeout "$lim" "$@" > "$D/$name.log" 2>&1; local rc=$?
  echo "=== $name: rc=$rc in $(( $(date +%s) - s )) s"; tail -n "${TAIL:-6}" "$D/$name.log"
}
step build 200 python3 -m orster4d.build --cuda
step tests 200 python3 -m pytest tests -m cuda -q -ra -p no:cacheprovider -k "not gsplat"
TAIL=14 step kernel_split 150 python3 -m benchmarks.kernel_split --json "$D/kernel_split.json"
step step_split 120 python3 -m benchmarks.step_split --json "$D/step_split.json" --trace-dir "$D/traces"
if command -v ncu > /dev/null; then  # the compositing backward at 100k@800
  step ncu_raster_bwd 90 ncu --clock-control none --target-processes all -k "regex:rasterize_bwd" --launch-skip 3 \
    --launch-count 1 --section SpeedOfLight --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
    --section InstructionStats --section Occupancy --section WarpStateStats \
    python3 -m benchmarks.kernel_split --json "$D/ncu_split.json" --reps 3 --sizes 100k@800 --parts rasterize
fi
step flake 150 bash -c 'f=0; for i in 1 2 3 4 5 6 7 8; do python3 -m pytest tests/ops/test_attention.py -q -p no:cacheprovider \
  -k "many_heads_and_long_rows and bfloat16" > /tmp/fl.log 2>&1 || { f=$((f+1)); grep -E "^E " /tmp/fl.log | head -4; }; done; echo "bf16 fails: $f of 8"'
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem --format=csv > "$D/smi.txt" 2>&1
tar czf "$OUT/profile.tgz" -C "$OUT" profile; rm -rf "$D"; echo "total $(( $(date +%s) - t0 )) s"
