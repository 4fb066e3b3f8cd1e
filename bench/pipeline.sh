#!/usr/bin/env bash
# End-to-end benchmark of `sparkquant quantize`: wall time against the number of executor cores (local[1] vs
# local[2]) and the share of time per phase (embeddings, hessian, quantize, forward, assemble), read from each run's
# quantization_report.json. The ratio local[1]/local[2] is the speed-up measured in the same script.
#
#   bench/pipeline.sh                  dev-llama2-26m from ../shared (or a generated model when it is absent)
#   bench/pipeline.sh --scale          a generated stack of Llama-3-8B-shaped layers (2 layers; slow: tens of minutes)
#   bench/pipeline.sh --moe            a generated tiny qwen3_moe (4 layers, 16 experts, top-4): experts' Hessians and
#                                      blocks as Spark work (quick)
#   bench/pipeline.sh --moe-scale      one Qwen3-30B-A3B-shaped layer (128 experts of 768, top-8; 2.3 GiB fp32 of
#                                      experts per layer; slow)
#   SAMPLES=32 SEQ_LEN=512 bench/pipeline.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
work="${WORK:-$here/work/bench-pipeline}"
mkdir -p "$work"
samples="${SAMPLES:-32}"
seq_len="${SEQ_LEN:-512}"

if [[ "${1:-}" == "--moe" ]]; then
  model="$work/tiny-qwen3-moe"
  [[ -d "$model" ]] || bin/sparkquant generate --output "$model" --preset tiny-qwen3-moe
  calib="$here/README.md"
elif [[ "${1:-}" == "--moe-scale" ]]; then
  model="$work/qwen3-30b-a3b-1layer"
  [[ -d "$model" ]] || bin/sparkquant generate --output "$model" --preset qwen3-30b-a3b --layers 1
  calib="$here/README.md"
elif [[ "${1:-}" == "--scale" ]]; then
  model="$work/llama3-8b-2layers"
  [[ -d "$model" ]] || bin/sparkquant generate --output "$model" --preset llama3-8b --layers 2
  calib="$here/README.md"
elif [[ -d "$here/../shared/models/dev-llama2-26m" ]]; then
  model="$here/../shared/models/dev-llama2-26m"
  calib="$here/../shared/text/calib.txt"
else
  model="$work/small"
  [[ -d "$model" ]] || bin/sparkquant generate --output "$model" --preset small
  calib="$here/README.md"
fi

echo "model $model, $samples samples x $seq_len tokens, $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}"
declare -A wall
for cores in 1 2; do
  out="$work/out-local$cores"
  start=$(date +%s.%N)
  bin/sparkquant quantize --model "$model" --output "$out" --overwrite --calibration "$calib" \
    --samples "$samples" --seq-len "$seq_len" --conf "spark.master=local[$cores]" > "$work/local$cores.log" 2>&1
  end=$(date +%s.%N)
  wall[$cores]=$(echo "$end - $start" | bc)
  python3 - "$out/quantization_report.json" "${wall[$cores]}" "$cores" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
wall = float(sys.argv[2])
phases = report["seconds_by_phase"]
inside = sum(phases.values())
print(f"local[{sys.argv[3]}]: wall {wall:.1f} s (JVM and Spark start-up {wall - inside:.1f} s)")
for name, seconds in phases.items():
    print(f"  {name:12s} {seconds:8.1f} s  {100 * seconds / wall:5.1f} %")
PY
done
cmp -s "$work/out-local1/model.safetensors" "$work/out-local2/model.safetensors" \
  && echo "outputs byte-identical: yes" || echo "outputs byte-identical: NO"
echo "speed-up local[2] vs local[1]: $(echo "scale=2; ${wall[1]} / ${wall[2]}" | bc)x"
