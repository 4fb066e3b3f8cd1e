#!/usr/bin/env bash
# sparkquant on a Dataproc cluster (Spark on YARN) with `gcloud dataproc jobs submit spark`:
#
#   CLUSTER=my-cluster REGION=europe-west1 JAR=gs://my-bucket/sparkquant/sparkquant-0.1.0-spark.jar \
#     deploy/dataproc/submit.sh -- quantize --model gs://my-bucket/models/llama-3-8b \
#       --output gs://my-bucket/models/llama-3-8b-gptq-w4g128 --config gs://my-bucket/sparkquant/gptq-w4g128.yaml \
#       --calibration gs://my-bucket/data/c4-sample.jsonl --resume
#
# The job's properties are deploy/spark-settings.sh's (conf/spark-defaults.conf.template, sized by EXECUTOR_MEMORY
# and EXECUTOR_CORES), less the Kubernetes ones, passed as a properties file; EXECUTORS (default 8) sets
# spark.executor.instances. gcloud options before "--" are added (e.g. --labels, --max-failures-total).
# Credentials: the cluster's service account reads and writes gs://; nothing secret goes on this command line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${CLUSTER:?set CLUSTER to the Dataproc cluster}" "${REGION:?set REGION}" "${JAR:?set JAR to the shaded jar on gs://}"
gcloud_args=()
while (( $# > 0 )) && [[ "$1" != "--" ]]; do
  gcloud_args+=("$1"); shift
done
[[ "${1:-}" == "--" ]] && shift
if (( $# == 0 )); then
  echo "usage: $0 [gcloud options] -- <sparkquant command and options>" >&2
  exit 2
fi
props="$(mktemp "${TMPDIR:-/tmp}/sparkquant-properties.XXXXXX")"
trap 'rm -f "$props"' EXIT
settings="$("$here/../spark-settings.sh")"
{ grep -v '^spark\.kubernetes\.' <<< "$settings"; echo "spark.executor.instances=${EXECUTORS:-8}"; } > "$props"
gcloud dataproc jobs submit spark --cluster="$CLUSTER" --region="$REGION" \
  --class=org.sparkquant.cli.SparkQuant --jars="$JAR" --properties-file="$props" \
  "${gcloud_args[@]}" -- "$@"
