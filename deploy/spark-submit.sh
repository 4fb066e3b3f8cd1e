#!/usr/bin/env bash
# Submits a sparkquant command to a Spark cluster (YARN, Kubernetes or standalone) with the settings that matter.
#
#   deploy/spark-submit.sh --master yarn [--deploy-mode cluster] -- quantize --model s3a://... --output s3a://...
#
# Everything before "--" goes to spark-submit, everything after it to sparkquant. The Spark settings are
# deploy/spark-settings.sh's (conf/spark-defaults.conf.template, sized by EXECUTOR_MEMORY and EXECUTOR_CORES, the
# kernel set from OPENBLAS_CORETYPE; see there), each as a --conf; spark-submit options before "--" win. Environment:
#   SPARK_HOME                 the Spark 4.x installation (spark-submit is taken from there)
#   SPARKQUANT_JAR             the shaded jar, a path or a URI the cluster resolves (default:
#                              target/sparkquant-*-spark.jar of this checkout)
#   SPARKQUANT_SPARK_DEFAULTS, EXECUTOR_MEMORY, EXECUTOR_CORES, OPENBLAS_CORETYPE: see deploy/spark-settings.sh
#   OMP_NUM_THREADS            OpenBLAS/ND4J threads of a client-mode driver (default 1, as in every executor)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${SPARK_HOME:?set SPARK_HOME to your Spark 4.x installation}"
jar="${SPARKQUANT_JAR:-$(ls "$here"/target/sparkquant-*-spark.jar 2>/dev/null | head -1)}"
# a URI (local:///opt/sparkquant/lib/sparkquant.jar in the image, s3a://, hdfs://) is the cluster's to resolve
if [[ -z "$jar" || ( "$jar" != *://* && ! -f "$jar" ) ]]; then
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

settings="$("$here/deploy/spark-settings.sh")"
conf_args=()
while IFS= read -r kv; do
  conf_args+=(--conf "$kv")
done <<< "$settings"
# A client-mode driver inherits this environment; cluster-mode drivers and executors get it through Spark.
OPENBLAS_CORETYPE="$(sed -n 's/^spark\.executorEnv\.OPENBLAS_CORETYPE=//p' <<< "$settings")"
export OPENBLAS_CORETYPE
# One OpenBLAS/ND4J thread in the driver too: with a local master the driver computes, and its results' last bits
# depend on the thread count (measured: 2 threads gave another model.safetensors than the executors' single thread).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"

exec "$SPARK_HOME/bin/spark-submit" \
  --class org.sparkquant.cli.SparkQuant \
  "${conf_args[@]}" \
  "${submit_args[@]}" \
  "$jar" "$@"
