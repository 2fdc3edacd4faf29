#!/usr/bin/env bash
# One call on a GPU machine: build the CUDA kernels, run the CUDA tests, run every
# benchmark report, and merge them into one JSON report named after the GPU.
#
#   bash scripts/gpu_check.sh [OUTDIR] [PARTS]     (PARTS: comma list of build,tests,rasterize,hexplane,attention,construct,train)
#
# Wheels for packages the machine lacks (pytest, pytest-benchmark, gsplat, ...) are
# installed from .whl/ when that folder exists. Reports land in OUTDIR (default
# $OUT, else benchmarks/results/latest); copy the merged report to benchmarks/results/.
#
# A device call is limited to 10 minutes; on an H100 the parts take about: build 1.3 min (modules
# in parallel), tests 2.3 min (1.5 of them building gsplat's CUDA for the gsplat comparison, which
# the rasterize part then reuses), rasterize 4 min, hexplane 0.5 min, attention up to its
# --budget-s, construct ~2 min per family and backend at the default schedule, train ~1.3 min. Split
# the parts over two calls when needed, e.g. PARTS=build,tests,rasterize,hexplane then
# PARTS=build,attention,construct (the build is cached within one machine's life).
# Extra arguments per part: RASTERIZE_ARGS (e.g. "--sizes 100k@800,1M@800 --no-4d"), HEXPLANE_ARGS,
# ATTENTION_ARGS, CONSTRUCT_ARGS (e.g. "--families hopper walker --set max_sh_degree=0"), TRAIN_ARGS.
# Markdown tables for docs/: python scripts/report_tables.py {hexplane,construct,train,rasterize} REPORT.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:-${OUT:-benchmarks/results/latest}}
PARTS=${2:-build,tests,rasterize,hexplane,attention,construct}
mkdir -p "$OUTDIR"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:${PYTHONPATH:-}
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1
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
run_part() {  # run_part <name> <command...>
  local name=$1; shift
  local t0=$(date +%s.%N)
  echo "=== $name: $*"
  "$@" > "$OUTDIR/$name.log" 2>&1; local rc=$?
  local dt=$(python3 -c "import time;print(round(time.time()-$t0,1))")
  tail -n 25 "$OUTDIR/$name.log"; echo "=== $name: rc=$rc in ${dt}s"
  record "$name" "$rc" "$dt"
}
has build && run_part build python3 -m orster4d.build --cuda
has tests && run_part tests python3 -m pytest tests -m cuda -q -ra -p no:cacheprovider --durations=8
has rasterize && [ -f scripts/gpu_rasterize_report.py ] && run_part rasterize python3 scripts/gpu_rasterize_report.py --out "$OUTDIR/rasterize.json" ${RASTERIZE_ARGS:-}
has hexplane && [ -f scripts/gpu_hexplane_report.py ] && run_part hexplane python3 scripts/gpu_hexplane_report.py --out "$OUTDIR/hexplane.json" ${HEXPLANE_ARGS:-}
has attention && [ -f scripts/gpu_attention_report.py ] && run_part attention python3 scripts/gpu_attention_report.py --out "$OUTDIR/attention.json" ${ATTENTION_ARGS:---budget-s 240}
has construct && [ -f scripts/gpu_construct_report.py ] && run_part construct python3 scripts/gpu_construct_report.py --out "$OUTDIR/construct.json" ${CONSTRUCT_ARGS:---families hopper}
has train && [ -f scripts/gpu_train_report.py ] && run_part train python3 scripts/gpu_train_report.py --out "$OUTDIR/train.json" ${TRAIN_ARGS:-}
python3 scripts/merge_reports.py "$OUTDIR" --gpu "$gpu" --out "$OUTDIR/gpu_report_${gpu}.json"
