# The GPU check: one call on a lent GPU machine (one H100 or H200, no registry, torch and Lightning in its image,
# no MLflow) that proves the pipeline there and measures what is left to measure. Prepare here, then run there:
#
#     python benchmarks/gpu/wheels.py                  # here: .gpu/wheels, what the image lacks (checks its size)
#     bash benchmarks/gpu/check.sh                     # there (device tool: carry .gpu, timeout 600): about 9 minutes
#     bash benchmarks/gpu/check.sh --dry-run           # here, on the CPU: wheels checked, pipeline in 32-true, rows named
#
# 1. env.txt: GPU, driver, CPU count, versions;  2. the wheels installed into /tmp/site (pip check's word kept);
# 3. pipeline_check.py: `mlflow run .` in auto (bf16-mixed), 16-mixed and 32-true, the registered model scored on
#    the GPU and on the CPU (pipeline.jsonl, pipeline.log);  4. rows.sh: the training throughput rows that fit
#    before the deadline (BUDGET_S from the start, default 540 s), one log each. Everything lands in $OUT (at most
#    8 files come back: env.txt, check.log, pipeline.jsonl, pipeline.log and four row logs).
set -u
cd "$(dirname "$0")/../.."
DRY_RUN=false; [ "${1:-}" = "--dry-run" ] && { DRY_RUN=true; shift; }
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
DEADLINE=$(( $(date +%s) + ${BUDGET_S:-540} ))
exec > >(tee -a "$OUT/check.log") 2>&1
echo "gpu check$($DRY_RUN && echo ' (dry run, CPU)'): $OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false GIT_PYTHON_REFRESH=quiet
status=0
if $DRY_RUN; then
  python3 benchmarks/gpu/wheels.py --check || status=1
else
  rm -rf /tmp/site
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/wheels/*.whl || exit 1
  mkdir -p /tmp/site/bin && ln -sf "$(command -v python3)" /tmp/site/bin/python  # MLproject's commands say `python`
  export PYTHONPATH=/tmp/site PATH="/tmp/site/bin:$PATH"
  python3 -m pip check 2>&1 | grep -v "^No broken" | head -20
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>/dev/null || echo "no GPU (nvidia-smi)"
  echo "cpus $(nproc), $(date -u)"
  python3 -c "import sys,torch,transformers,lightning,torchmetrics,mlflow;print('python',sys.version.split()[0],'torch',torch.__version__,'cuda',torch.version.cuda,'transformers',transformers.__version__,'lightning',lightning.__version__,'torchmetrics',torchmetrics.__version__,'mlflow',mlflow.__version__)"
} 2>&1 | tee "$OUT/env.txt"
if $DRY_RUN; then
  python3 benchmarks/gpu/pipeline_check.py --out "$OUT" --accelerator cpu --precisions 32-true --shape bert-tiny --epochs 1 --max-length 64 || status=1
  echo "rows it would run: bash benchmarks/gpu/rows.sh (needs CUDA and accelerate)"
else
  python3 benchmarks/gpu/pipeline_check.py --out "$OUT" || status=1
  ROWS_DEADLINE=$DEADLINE bash benchmarks/gpu/rows.sh "$@"
fi
echo "gpu check: $( ((status == 0)) && echo passed || echo FAILED ), $(( $(date +%s) - DEADLINE + ${BUDGET_S:-540} )) s"
exit $status
