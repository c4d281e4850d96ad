# BENCHMARKS.md's GPU training rows in one call on a lent GPU machine, most wanted first, each log kept in $OUT.
#
#     bash benchmarks/gpu_rows.sh                       # all four: bert-base 128, minilm 128, bert-base 32, minilm 32
#     bash benchmarks/gpu_rows.sh "minilm 128" "minilm 32"
#
# Such a machine runs its own image's python3 and packages and reaches no registry: wheels of other versions
# (this project's transformers, say) go in $WHEELS and are put first on PYTHONPATH. The training benchmark needs
# no MLflow. On an H200 bert-base at batch 128 with 3 repeats took 322 s (compilation included), so four rows do
# not fit one 10-minute call: pass the rows a call still has to do. Append each log's last line to
# benchmarks/results/throughput-<card>.jsonl.
set -u
OUT=${OUT:-$(mktemp -d)}  # the device tool sets $OUT; elsewhere a fresh folder, named below
WHEELS=${WHEELS:-.gpu/wheels}
mkdir -p "$OUT" && echo "logs: $OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  python3 -m pip install -q --no-deps --no-index --target /tmp/gpu-rows-deps "$WHEELS"/*.whl
  export PYTHONPATH=/tmp/gpu-rows-deps
fi
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv; nproc; date -u
  python3 -c "import torch,transformers,lightning,torchmetrics,accelerate;print('torch',torch.__version__,'transformers',transformers.__version__,'lightning',lightning.__version__,'torchmetrics',torchmetrics.__version__,'accelerate',accelerate.__version__)"
} 2>&1 | tee "$OUT/env.txt"
[ $# -gt 0 ] || set -- "bert-base 128" "minilm 128" "bert-base 32" "minilm 32"
for row in "$@"; do
  read -r model batch <<< "$row"
  start=$(date +%s)
  python3 benchmarks/finetune_throughput.py --device cuda --model "$model" --batch-size "$batch" --repeats 3 > "$OUT/$model-$batch.log" 2>&1
  echo "== $model $batch: exit $?, $(( $(date +%s) - start )) s"
  grep -E "^ *(hf_trainer|hf_tuned|project|ratio)" "$OUT/$model-$batch.log"
done
