# BENCHMARKS.md's GPU training rows on a lent GPU machine, in the order given, each log kept in $OUT.
#
#     bash benchmarks/gpu/rows.sh                              # all four: minilm 32, minilm 128, bert-base 32, bert-base 128
#     bash benchmarks/gpu/rows.sh "bert-base 128" "minilm 32"
#     ROWS_DEADLINE=$(( $(date +%s) + 300 )) bash benchmarks/gpu/rows.sh   # start no row that would end past it
#
# check.sh runs it after the pipeline check, the wheels already installed (.gpu/wheels: this project's transformers;
# the training benchmark needs no MLflow). On an H200 bert-base at batch 128 with 3 repeats took 322 s, compilation
# included; ROW_SECONDS holds such estimates, and a row whose estimate does not fit before ROWS_DEADLINE is skipped
# and named, to be passed to the next call. Append each log's last line to benchmarks/results/throughput-<card>.jsonl.
set -u
OUT=${OUT:-$(mktemp -d)}  # the device tool sets $OUT; elsewhere a fresh folder, named below
mkdir -p "$OUT" && echo "row logs: $OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
declare -A ROW_SECONDS=(["minilm 32"]=90 ["minilm 128"]=150 ["bert-base 32"]=170 ["bert-base 128"]=330)
[ $# -gt 0 ] || set -- "minilm 32" "minilm 128" "bert-base 32" "bert-base 128"
skipped=()
for row in "$@"; do
  read -r model batch <<< "$row"
  start=$(date +%s)
  left=$(( ${ROWS_DEADLINE:-$(( start + 100000 ))} - start ))
  if (( ${ROW_SECONDS[$row]:-330} > left )); then skipped+=("\"$row\""); continue; fi
  timeout "$left" python3 benchmarks/finetune_throughput.py --device cuda --model "$model" --batch-size "$batch" --repeats 3 \
    > "$OUT/row-$model-$batch.log" 2>&1
  echo "== $model $batch: exit $?, $(( $(date +%s) - start )) s"
  grep -E "^ *(hf_trainer|hf_tuned|project|ratio)" "$OUT/row-$model-$batch.log"
done
(( ${#skipped[@]} == 0 )) || echo "rows not run (no time left): bash benchmarks/gpu/rows.sh ${skipped[*]}"
