#!/usr/bin/env bash
# Submits a sparkquant command to a Spark cluster (YARN, Kubernetes or standalone) with the options that matter.
#
#   deploy/spark-submit.sh --master yarn [--deploy-mode cluster] -- quantize --model s3a://... --output s3a://...
#
# Everything before "--" goes to spark-submit, everything after it to sparkquant. Environment:
#   SPARK_HOME           the Spark 4.x installation (spark-submit is taken from there)
#   SPARKQUANT_JAR       the shaded jar (default: target/sparkquant-*-spark.jar of this checkout)
#   EXECUTOR_MEMORY      heap per executor (default 24g); off-heap for ND4J is sized to match
#   EXECUTOR_CORES       cores per executor (default 4)
#   OPENBLAS_CORETYPE    OpenBLAS kernel set of the driver and every executor (default Haswell: the bundled
#                        OpenBLAS 0.3.19 miscomputes with some AVX-512 kernels, and one kernel everywhere keeps a
#                        mixed cluster's results byte-identical)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${SPARK_HOME:?set SPARK_HOME to your Spark 4.x installation}"
jar="${SPARKQUANT_JAR:-$(ls "$here"/target/sparkquant-*-spark.jar 2>/dev/null | head -1)}"
if [[ -z "$jar" || ! -f "$jar" ]]; then
  echo "no shaded jar: run 'mvn -B -DskipTests package' or set SPARKQUANT_JAR" >&2
  exit 2
fi

submit_args=()
while (( $# > 0 )) && [[ "$1" != "--" ]]; do
  submit_args+=("$1"); shift
done
[[ "${1:-}" == "--" ]] && shift
if (( $# == 0 )); then
  echo "usage: $0 [spark-submit options] -- <sparkquant command and options>" >&2
  exit 2
fi

mem="${EXECUTOR_MEMORY:-24g}"
mem_gb="${mem%g}"
cores="${EXECUTOR_CORES:-4}"
# A client-mode driver inherits this environment; cluster-mode drivers and executors get it through Spark.
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-Haswell}"

exec "$SPARK_HOME/bin/spark-submit" \
  --class org.sparkquant.cli.SparkQuant \
  --conf spark.executor.cores="$cores" \
  --conf spark.executor.memory="$mem" \
  --conf spark.executor.memoryOverhead="${mem_gb}g" \
  --conf spark.executorEnv.OMP_NUM_THREADS=1 \
  --conf spark.executorEnv.OPENBLAS_CORETYPE="$OPENBLAS_CORETYPE" \
  --conf spark.yarn.appMasterEnv.OPENBLAS_CORETYPE="$OPENBLAS_CORETYPE" \
  --conf spark.kubernetes.driverEnv.OPENBLAS_CORETYPE="$OPENBLAS_CORETYPE" \
  --conf "spark.executor.extraJavaOptions=-Dorg.bytedeco.javacpp.maxbytes=$(( mem_gb * 5 / 6 ))g -Dorg.bytedeco.javacpp.maxphysicalbytes=$(( mem_gb * 2 - 2 ))g" \
  --conf spark.rdd.compress=false \
  --conf spark.rpc.message.maxSize=512 \
  --conf spark.network.timeout=600s \
  "${submit_args[@]}" \
  "$jar" "$@"
