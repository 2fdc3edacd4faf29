#!/usr/bin/env bash
# One GPU call of the reproduction protocol: build the kernels, run `orster4d-reproduce` for the
# rows named on the command line within a time budget (runs are cached and resume, so the next call
# on the same machine continues where this one stopped), write the tables of what is finished, and
# pack the results (and, with EXPORT_MODEL=1, the best `ours` model as a float16 pipeline) into OUTDIR.
#
#   BUDGET_S=420 JOBS=5 bash scripts/gpu_reproduce.sh OUTDIR ROW [ROW ...]
#
# Environment: PRESET (default small), SEEDS (default "0 1 2"), SCARCITY=1 (add the curve's rows),
# REPRO_ROOT (default build/repro: inside the tree, so a warm machine keeps it between calls),
# START_BY (seconds: no new row/seed task starts after it, `--start-by`; for the session's last call,
# whose unfinished tasks no later call would resume).
# A device call that runs past its limit loses the machine, and with it the run cache: keep BUDGET_S
# at least 150 s under the call's limit, less the build (~90 s fresh), for the tables and the packing.
set -uo pipefail
cd "$(dirname "$0")/.."
OUTDIR=${1:?OUTDIR}; shift
mkdir -p "$OUTDIR"; OUTDIR=$(cd "$OUTDIR" && pwd)
ROOT=${REPRO_ROOT:-$PWD/build/repro}
PRESET=${PRESET:-small}; SEEDS=${SEEDS:-0 1 2}; BUDGET_S=${BUDGET_S:-420}; JOBS=${JOBS:-5}
if [ -d .whl ] && [ ! -d /tmp/site ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl
fi
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
# the package as a user installs it (editable: kernels/ is mapped into the package as orster4d.kernels)
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . > "$OUTDIR/install.log" 2>&1 \
  || { echo "pip install -e . failed"; tail -20 "$OUTDIR/install.log"; exit 1; }
export ORSTER4D_BUILD_DIR=$PWD/build/gpu-jit MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=9.0
t0=$(date +%s)
[ "${SKIP_BUILD:-0}" = 1 ] || python3 -m orster4d.build --cuda > "$OUTDIR/build.log" 2>&1 || { tail -30 "$OUTDIR/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
scarcity=(); [ "${SCARCITY:-0}" = 1 ] && scarcity=(--scarcity)
start_by=(); [ -n "${START_BY:-}" ] && start_by=(--start-by "$START_BY")
timeout -s INT "$BUDGET_S" python3 -m orster4d.reproduce.cli --root "$ROOT" --preset "$PRESET" --seeds $SEEDS \
  --jobs "$JOBS" --no-progress "${scarcity[@]}" "${start_by[@]}" --rows "$@" > "$OUTDIR/reproduce.log" 2>&1
echo "reproduce: rc=$? after $(( $(date +%s) - t0 )) s"; tail -5 "$OUTDIR/reproduce.log"
pkill -f orster4d.reproduce.workers 2>/dev/null  # a worker the interrupt left behind
timeout 120 python3 -m orster4d.reproduce.cli --root "$ROOT" --preset "$PRESET" --seeds $SEEDS --cached-only --no-progress \
  "${scarcity[@]}" --rows "$@" > "$OUTDIR/tables.log" 2>&1 || tail -20 "$OUTDIR/tables.log"
nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv >> "$OUTDIR/reproduce.log" 2>&1
# results: the JSON, the tables, the worker logs' tails, the seed-0 image-condition strips
R=/tmp/repro_out; rm -rf $R; mkdir -p $R/logs $R/strips
cp "$ROOT"/reproduction.json "$ROOT"/reproduction.md $R/ 2>/dev/null
for f in "$ROOT"/logs/*.log; do [ -f "$f" ] && tail -c 20000 "$f" > $R/logs/$(basename "$f"); done
(cd "$ROOT" && find strips -path '*seed0*' -name '*_image.png' -exec cp --parents {} $R/ \;) 2>/dev/null
(cd "$ROOT" && find runs -name 'log.jsonl' -path '*stage*' | while read -r f; do mkdir -p "$R/$(dirname "$f")"; cp "$f" "$R/$f"; done)
(cd "$ROOT" && for d in runs/*/; do [ -f "$d/done.json" ] && mkdir -p "$R/$d" && cp "$d/done.json" "$d/key.json" "$R/$d"; done)
tar czf "$OUTDIR/results.tgz" -C $R .
if [ "${EXPORT_MODEL:-0}" = 1 ] && [ -f "$ROOT/reproduction.json" ]; then
  python3 - "$ROOT" /tmp/model_out <<'PY'
import json, shutil, sys
from pathlib import Path
import torch
from orster4d.generation.pipeline import pipeline_from_checkpoint
root, out = Path(sys.argv[1]), Path(sys.argv[2])
d = json.loads((root / "reproduction.json").read_text())
row = next(r for r in d["rows"] if r["name"] == "ours" and r["status"] == "done")
psnr = {s: v["conditions"]["image"]["mean"]["psnr"] for s, v in row["per_seed"].items()}
best = max(psnr, key=psnr.get)
ck = root / "runs" / row["runs"][best]["stage4"] / "stage4" / "final"
shutil.rmtree(out, ignore_errors=True)
pipe = pipeline_from_checkpoint(str(ck)).to(torch.float16)
pipe.save_pretrained(str(out / "pipeline"))
chain = {k: v for k, v in row["runs"][best].items() if k.startswith("stage")}
(out / "made_by.json").write_text(json.dumps({"seed": int(best), "image_psnr_by_seed": psnr, "chain": chain,
                                              "checkpoint": str(ck.relative_to(root))}, indent=1))
print("exported seed", best, psnr)
PY
  (cd /tmp/model_out && tar czf "$OUTDIR/model_unet.tgz" pipeline/unet && tar czf "$OUTDIR/model_vae.tgz" pipeline/vae \
     && tar czf "$OUTDIR/model_rest.tgz" --exclude pipeline/unet --exclude pipeline/vae .)
fi
ls -la "$OUTDIR"; echo "total: $(( $(date +%s) - t0 )) s"
