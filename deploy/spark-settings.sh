#!/usr/bin/env bash
# Prints sparkquant's Spark settings, one "key=value" a line: conf/spark-defaults.conf.template (the one source of
# them), with the executor sized and the OpenBLAS kernel set from the environment. deploy/spark-submit.sh and
# deploy/dataproc/submit.sh use it; so can any other launcher. Environment:
#   SPARKQUANT_SPARK_DEFAULTS  the settings file (default: conf/spark-defaults.conf.template of this checkout)
#   EXECUTOR_MEMORY            heap per executor in GiB, e.g. 16g (default: the file's); the off-heap overhead and
#                              javacpp's limits are sized from it: overhead = heap, maxbytes = heap*5/6,
#                              maxphysicalbytes = 2*heap - 2
#   EXECUTOR_CORES             cores per executor (default: the file's)
#   OPENBLAS_CORETYPE          OpenBLAS kernel set of executors and cluster-mode drivers (default: the file's,
#                              Haswell: the bundled OpenBLAS 0.3.19 miscomputes with some AVX-512 kernels, and one
#                              kernel everywhere keeps a mixed cluster's results byte-identical)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
defaults="${SPARKQUANT_SPARK_DEFAULTS:-$here/conf/spark-defaults.conf.template}"
if [[ ! -f "$defaults" ]]; then
  echo "$defaults: no such settings file (SPARKQUANT_SPARK_DEFAULTS)" >&2
  exit 2
fi

# spark-defaults format: "key<whitespace>value", '#' comments
keys=(); declare -A value=()
while IFS= read -r line || [[ -n "$line" ]]; do
  line="${line#"${line%%[![:space:]]*}"}"
  [[ -z "$line" || "$line" == \#* ]] && continue
  key="${line%%[[:space:]]*}"
  val="${line#"$key"}"; val="${val#"${val%%[![:space:]]*}"}"; val="${val%"${val##*[![:space:]]}"}"
  [[ -v "value[$key]" ]] || keys+=("$key")
  value["$key"]="$val"
done < "$defaults"

if [[ -n "${EXECUTOR_MEMORY:-}" ]]; then
  if [[ ! "$EXECUTOR_MEMORY" =~ ^[1-9][0-9]*[gG]$ ]]; then
    echo "EXECUTOR_MEMORY=$EXECUTOR_MEMORY: expected whole GiB such as 16g" >&2
    exit 2
  fi
  gb="${EXECUTOR_MEMORY%[gG]}"
  for key in spark.executor.memory spark.executor.memoryOverhead spark.executor.extraJavaOptions; do
    [[ -v "value[$key]" ]] || keys+=("$key")
  done
  value[spark.executor.memory]="${gb}g"
  value[spark.executor.memoryOverhead]="${gb}g"
  opts="$(sed -E 's/ *-Dorg\.bytedeco\.javacpp\.max(physical)?bytes=[^ ]*//g; s/^ +//' \
    <<< "${value[spark.executor.extraJavaOptions]:-}")"
  value[spark.executor.extraJavaOptions]="${opts:+$opts }-Dorg.bytedeco.javacpp.maxbytes=$(( gb * 5 / 6 ))g -Dorg.bytedeco.javacpp.maxphysicalbytes=$(( gb * 2 - 2 ))g"
fi
if [[ -n "${EXECUTOR_CORES:-}" ]]; then
  if [[ ! "$EXECUTOR_CORES" =~ ^[1-9][0-9]*$ ]]; then
    echo "EXECUTOR_CORES=$EXECUTOR_CORES: expected a positive whole number" >&2
    exit 2
  fi
  [[ -v "value[spark.executor.cores]" ]] || keys+=(spark.executor.cores)
  value[spark.executor.cores]="$EXECUTOR_CORES"
fi
coretype="${OPENBLAS_CORETYPE:-${value[spark.executorEnv.OPENBLAS_CORETYPE]:-Haswell}}"
for key in spark.executorEnv.OPENBLAS_CORETYPE spark.yarn.appMasterEnv.OPENBLAS_CORETYPE \
    spark.kubernetes.driverEnv.OPENBLAS_CORETYPE; do
  [[ -v "value[$key]" ]] || keys+=("$key")
  value["$key"]="$coretype"
done

for key in "${keys[@]}"; do
  printf '%s=%s\n' "$key" "${value[$key]}"
done
