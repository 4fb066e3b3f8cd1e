#!/usr/bin/env bash
# sparkquant on Kubernetes with plain spark-submit (no operator), on the image of deploy/kubernetes/Dockerfile:
#
#   K8S_API=https://kube-api.example.com:6443 IMAGE=registry.example.com/sparkquant:0.1.0 \
#     deploy/kubernetes/spark-submit-k8s.sh -- quantize --model s3a://models/llama-3-8b \
#       --output s3a://models/llama-3-8b-gptq-w4g128 --config /opt/sparkquant/conf/presets/gptq-w4g128.yaml \
#       --calibration s3a://data/c4-sample.jsonl --resume
#
# The settings are deploy/spark-submit.sh's (conf/spark-defaults.conf.template, EXECUTOR_MEMORY, EXECUTOR_CORES);
# spark-submit options before "--" are added. Environment: K8S_API, IMAGE (required), NAMESPACE (sparkquant),
# SERVICE_ACCOUNT (sparkquant, bound to an IAM role: IRSA), EXECUTORS (8). S3 credentials come from IRSA's web
# identity token, never from this command line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
: "${K8S_API:?set K8S_API to the Kubernetes API server, e.g. https://kube-api.example.com:6443}"
: "${IMAGE:?set IMAGE to the sparkquant image (deploy/kubernetes/Dockerfile)}"
export SPARKQUANT_JAR="${SPARKQUANT_JAR:-local:///opt/sparkquant/lib/sparkquant.jar}"
exec "$here/../spark-submit.sh" \
  --master "k8s://$K8S_API" \
  --deploy-mode cluster \
  --name sparkquant \
  --conf spark.executor.instances="${EXECUTORS:-8}" \
  --conf spark.kubernetes.container.image="$IMAGE" \
  --conf spark.kubernetes.namespace="${NAMESPACE:-sparkquant}" \
  --conf spark.kubernetes.authenticate.driver.serviceAccountName="${SERVICE_ACCOUNT:-sparkquant}" \
  --conf spark.kubernetes.authenticate.executor.serviceAccountName="${SERVICE_ACCOUNT:-sparkquant}" \
  --conf spark.hadoop.fs.s3a.aws.credentials.provider=software.amazon.awssdk.auth.credentials.WebIdentityTokenFileCredentialsProvider \
  "$@"
