#!/usr/bin/env bash
# One call on a GPU machine: build the CUDA kernels, run the CUDA tests, run every
# benchmark report, and merge them into one JSON report named after the GPU.
#
#   bash scripts/gpu_check.sh [OUTDIR] [PARTS]     (PARTS: comma list of build,tests,flake,benchonly,rasterize,hexplane,attention,construct,train,generate,memory,evaltime,hosttime)
#
# Wheels for packages the machine lacks (pytest, pytest-benchmark, gsplat, ...) are
# installed from .whl/ when that folder exists. Reports land in OUTDIR (default
# $OUT, else benchmarks/results/latest); copy the merged report to benchmarks/results/.
# Each report part is `python -m benchmarks.<part> --json OUTDIR/<part>.json`.
#
# A device call is limited to 10 minutes; on an H100 the parts take about: build 1.3 min (modules
# in parallel), tests 2.3 min (1.5 of them building gsplat's CUDA for the gsplat comparison, which
# the rasterize part then reuses), rasterize 4 min, hexplane 0.5 min, attention up to its
# --budget-s, construct ~2 min per family and backend at the default schedule, train ~1.3 min,
# generate (trains the quick reproduction chain, then orster4d-generate) a few minutes, memory
# (paper-preset generation, random weights) and evaltime (orster4d-eval, random networks) under a
# minute each; hosttime (benchmarks.host_time: the entry points' host time with tiny inputs) seconds. Split
# the parts over two calls when needed, e.g. PARTS=build,tests,rasterize,hexplane then
# PARTS=build,attention,construct (the build is cached within one machine's life).
# flake: the bf16 attention test with many heads, FLAKE_RUNS times (default 16), fresh inputs each run
# (one pytest process per run; a failure is counted, not fatal). benchonly: `pytest benchmarks/
# --benchmark-only`, the command the README gives users (pass/fail and pytest-benchmark's JSON).
# Extra arguments per part: RASTERIZE_ARGS (e.g. "--sizes 100k@800,1M@800 --no-4d"), HEXPLANE_ARGS,
# ATTENTION_ARGS, CONSTRUCT_ARGS (e.g. "--families hopper walker --set max_sh_degree=0"), TRAIN_ARGS.
#
# The device returns at most 8 files from $OUT: point OUTDIR at a subfolder and pack it (tar) at the
# end of the call, as scripts/gpu_session.sh does, when the parts write more.
#
# A/B timing: AB_TREE=/path/to/another/checkout runs each part of that tree right after the same
# part of ours, through that tree's own scripts/gpu_check.sh (so an older layout runs its own
# scripts), with the same *_ARGS, its own build folder (AB_BUILD_DIR, default
# /tmp/orster4d-build-ab) and its reports in OUTDIR/ab/ (tests are not repeated); the call ends with
# `python -m benchmarks.report compare` of the two merged reports (B / A, flagged beyond 5%).
# Markdown tables for docs/: python -m benchmarks.report docs (or table KIND REPORT).
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/results/latest}}
PARTS=${2:-build,tests,rasterize,hexplane,attention,construct}
mkdir -p "$OUTDIR"
OUTDIR=$(cd "$OUTDIR" && pwd)
if [ -n "${AB_TREE:-}" ] && [ ! -f "$AB_TREE/scripts/gpu_check.sh" ]; then
  echo "AB_TREE=$AB_TREE: no scripts/gpu_check.sh there" >&2; exit 2
fi
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
# the package itself, as a user installs it (editable: csrc/ and kernels/ are used in place)
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$OUTDIR/install.log" 2>&1 \
  || echo "pip install -e . failed (see $OUTDIR/install.log); running from PYTHONPATH"
BASE_PYTHONPATH=${PYTHONPATH:-}
export PYTHONPATH=$PWD${BASE_PYTHONPATH:+:$BASE_PYTHONPATH} PYTHONUNBUFFERED=1
export ORSTER4D_BUILD_DIR=${ORSTER4D_BUILD_DIR:-/tmp/orster4d-build} MAX_JOBS=${MAX_JOBS:-16}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
gpu=$(python3 -c "import torch;print(torch.cuda.get_device_name(0).replace(' ','_'))")
echo "GPU: $gpu"
has() { [[ ",$PARTS," == *",$1,"* ]]; }
status_json="$OUTDIR/parts.json"; echo "{}" > "$status_json"
record() {  # record <part> <rc> <seconds>
  python3 - "$status_json" "$1" "$2" "$3" <<'PY'
import json, sys
p, part, rc, sec = sys.argv[1:]
d = json.load(open(p)); d[part] = {"returncode": int(rc), "seconds": float(sec)}; json.dump(d, open(p, "w"), indent=1)
PY
}
# DEADLINE=S: a part starts only while more than 20 s of S (counted from the script's start) are
# left, and is stopped (timeout) when S is reached, so a device call ends before its limit and keeps
# what the earlier parts wrote; the merge at the end still runs.
T_START=$(date +%s)
run_part() {  # run_part <name> <command...>
  local name=$1; shift
  local t0=$(date +%s.%N) lim=()
  if [ -n "${DEADLINE:-}" ]; then
    local left=$(( DEADLINE - $(date +%s) + T_START ))
    [ "$left" -le 20 ] && { echo "=== $name: skipped (DEADLINE)"; record "$name" 124 0; return; }
    lim=(timeout "$left")
  fi
  echo "=== $name: $*"
  "${lim[@]}" "$@" > "$OUTDIR/$name.log" 2>&1; local rc=$?
  local dt=$(python3 -c "import time;print(round(time.time()-$t0,1))")
  tail -n 25 "$OUTDIR/$name.log"; echo "=== $name: rc=$rc in ${dt}s"
  record "$name" "$rc" "$dt"
}
ab_part() {  # ab_part <part>: the same part of AB_TREE, run by its own gpu_check.sh
  [ -n "${AB_TREE:-}" ] || return 0
  mkdir -p "$OUTDIR/ab"
  run_part "ab_$1" env PYTHONPATH="$BASE_PYTHONPATH" ORSTER4D_BUILD_DIR="${AB_BUILD_DIR:-/tmp/orster4d-build-ab}" \
    bash "$AB_TREE/scripts/gpu_check.sh" "$OUTDIR/ab" "$1"
}
report_part() {  # report_part <part> <default args>: ours, then the other tree's
  local args_var=${1^^}_ARGS
  run_part "$1" python3 -m benchmarks."$1" --json "$OUTDIR/$1.json" ${!args_var:-$2}
  ab_part "$1"
}
if has build; then run_part build python3 -m orster4d.build --cuda; ab_part build; fi
has tests && run_part tests python3 -m pytest tests -m cuda -q -ra -p no:cacheprovider --durations=8
export FLAKE_DIR="$OUTDIR/flake"
has flake && mkdir -p "$FLAKE_DIR" && run_part flake bash -c 'fails=0; for i in $(seq ${FLAKE_RUNS:-16}); do
  python3 -m pytest tests/ops/test_attention.py -q -p no:cacheprovider -k "many_heads_and_long_rows and bfloat16" \
    > "$FLAKE_DIR/flake_$i.log" 2>&1; rc=$?
  [ $rc = 5 ] && { echo "the selection matched no test"; exit 2; }
  [ $rc = 0 ] || { fails=$((fails + 1)); grep -E "^E " "$FLAKE_DIR/flake_$i.log" | head -8; }
done; echo "bf16 many-heads test: $fails of ${FLAKE_RUNS:-16} runs failed"; [ $fails = 0 ]'
has benchonly && run_part benchonly python3 -m pytest benchmarks/ --benchmark-only -q -ra -p no:cacheprovider \
  --benchmark-json "$OUTDIR/benchonly.json"
has rasterize && report_part rasterize ""
has hexplane && report_part hexplane ""
has attention && report_part attention "--budget-s 240"
has construct && report_part construct "--families hopper"
has train && report_part train ""
has generate && report_part generate ""
has memory && run_part memory python3 -m orster4d.generation.memory --json "$OUTDIR/memory.json" ${MEMORY_ARGS:-}
has evaltime && run_part evaltime python3 -m orster4d.evaluation.timing --json "$OUTDIR/evaltime.json" ${EVALTIME_ARGS:-}
has hosttime && run_part hosttime python3 -m benchmarks.host_time --device cuda --json "$OUTDIR/host_time.json" ${HOSTTIME_ARGS:-}
python3 -m benchmarks.report merge "$OUTDIR" --gpu "$gpu" --out "$OUTDIR/gpu_report_${gpu}.json"
if [ -n "${AB_TREE:-}" ] && [ -f "$OUTDIR/ab/gpu_report_${gpu}.json" ]; then
  echo "=== A/B: A = this tree ($PWD), B = $AB_TREE"
  python3 -m benchmarks.report compare "$OUTDIR/gpu_report_${gpu}.json" "$OUTDIR/ab/gpu_report_${gpu}.json" \
    --out "$OUTDIR/ab_compare.json"
fi
