#!/usr/bin/env bash
# GGUF end to end: `sparkquant quantize --format gguf` with GPTQ (calibrated) and with RTN (llama-quantize's bytes)
# for each llama.cpp file type, on dev-llama2-26m from ../shared (or a generated model when it is absent): wall time
# of each run, file size, bits per weight of the file, and the perplexity of both files and of the dense model on
# held-out text, all measured in this script. The ratio gptq/rtn of perplexity is the figure of merit.
#
#   bench/gguf.sh                                   # TYPES="Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K"
#   TYPES="Q4_K_M" SAMPLES=32 SEQ_LEN=512 bench/gguf.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
work="${WORK:-$here/work/bench-gguf}"
mkdir -p "$work"
types="${TYPES:-Q2_K Q3_K_M Q4_K_M Q5_K_M Q6_K}"
samples="${SAMPLES:-16}"
seq_len="${SEQ_LEN:-512}"
master="${MASTER:-local[2]}"

if [[ -d "$here/../shared/models/dev-llama2-26m" ]]; then
  model="$here/../shared/models/dev-llama2-26m"
  calib="$here/../shared/text/calib.txt"
  eval_text="$here/../shared/text/eval.txt"
else
  model="$work/small"
  [[ -d "$model" ]] || bin/sparkquant generate --output "$model" --preset small
  calib="$here/README.md"
  eval_text="$here/README.md"
fi
spark=(--conf "spark.master=$master" --conf spark.ui.enabled=false)

ppl() {
  bin/sparkquant eval --model "$1" --data "$eval_text" --seq-len "$seq_len" --max-windows 8 "${spark[@]}" 2>/dev/null \
    | awk '/^perplexity:/ {print $2}'
}
params=$(bin/sparkquant inspect --model "$model" --json 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["parameters"])')

echo "model $model ($params parameters), calibration $samples x $seq_len tokens, $master, $(nproc) cores"
echo "dense perplexity: $(ppl "$model")"
printf '%-8s %-5s %9s %10s %7s %10s\n' type mode seconds bytes bpw perplexity
for t in $types; do
  for mode in rtn gptq; do
    out="$work/$t-$mode.gguf"
    extra=()
    [[ "$mode" == gptq ]] && extra=(--calibration "$calib" --samples "$samples" --seq-len "$seq_len")
    start=$(date +%s.%N)
    bin/sparkquant quantize --model "$model" --output "$out" --overwrite --gguf-type "$t" "${extra[@]}" "${spark[@]}" \
      > "$work/$t-$mode.log" 2>&1
    end=$(date +%s.%N)
    bytes=$(stat -c %s "$out")
    printf '%-8s %-5s %9.1f %10d %7.3f %10s\n' "$t" "$mode" "$(echo "$end - $start" | bc)" "$bytes" \
      "$(echo "8 * $bytes / $params" | bc -l)" "$(ppl "$out")"
  done
done
