#!/usr/bin/env bash
# Smoke-tests a Spark cluster with sparkquant: quantizes a tiny model on the cluster and checks that the result is
# byte-identical to a single-core local run of the same command, and that it verifies.
#
#   deploy/smoke-test-cluster.sh --master spark://host:7077 --scratch s3a://bucket/tmp/sparkquant-smoke \
#     [--deploy-mode client|cluster] [--model URI --calibration URI] [--keep] [-- sparkquant settings]
#
#   --master URI       the cluster (spark://, yarn, k8s://...), as spark-submit takes it
#   --scratch URI      a directory every executor can read and write (s3a://, hdfs://, or a shared file system);
#                      the script writes model/, calibration.txt, local/ and cluster/ below it
#   --deploy-mode M    where the driver runs on the cluster (default client)
#   --model URI        quantize this checkpoint instead of a generated tiny llama (keep it small: it is also
#                      quantized on one local core); needs --calibration
#   --calibration URI  calibration text for --model
#   --keep             keep the scratch files (default: deleted after a passing run)
#   -- ...             settings for every sparkquant command, e.g. --conf fs.s3a.endpoint=http://host:9000
#
# Environment: SPARK_HOME and SPARKQUANT_JAR as for deploy/spark-submit.sh; EXECUTOR_MEMORY (default 2g) and
# EXECUTOR_CORES (default 1) size the executors for the tiny model; JAVA_HOME (optional) for the storage steps.
#
# Exit 0 when the cluster's output equals the local one, 1 when a step fails (named on stderr), 2 for bad usage.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# The comment above, without the "#": to stdout and exit 0 for --help, else to stderr and exit 2.
usage() {
  local code="${1:-2}"
  sed -n '2,/^# Exit 0/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&$(( code == 0 ? 1 : 2 ))
  exit "$code"
}

master="" scratch="" deploy_mode=client model="" calibration="" keep=false
while (( $# > 0 )); do
  case "$1" in
    --master) master="${2:?--master needs a value}"; shift 2 ;;
    --scratch) scratch="${2:?--scratch needs a value}"; shift 2 ;;
    --deploy-mode) deploy_mode="${2:?--deploy-mode needs a value}"; shift 2 ;;
    --model) model="${2:?--model needs a value}"; shift 2 ;;
    --calibration) calibration="${2:?--calibration needs a value}"; shift 2 ;;
    --keep) keep=true; shift ;;
    --) shift; break ;;
    -h|--help) usage 0 ;;
    *) echo "smoke-test-cluster: unknown option $1" >&2; usage ;;
  esac
done
settings=("$@")
[[ -n "$master" && -n "$scratch" ]] || usage
[[ "$deploy_mode" == client || "$deploy_mode" == cluster ]] || { echo "smoke-test-cluster: --deploy-mode is client or cluster" >&2; exit 2; }
if [[ -n "$model" && -z "$calibration" ]] || [[ -z "$model" && -n "$calibration" ]]; then
  echo "smoke-test-cluster: --model and --calibration go together" >&2
  exit 2
fi
: "${SPARK_HOME:?set SPARK_HOME to your Spark 4.x installation}"
jar="${SPARKQUANT_JAR:-$(ls "$here"/../target/sparkquant-*-spark.jar 2>/dev/null | head -1)}"
[[ -n "$jar" && -f "$jar" ]] || { echo "smoke-test-cluster: no shaded jar: run 'mvn -B -DskipTests package' or set SPARKQUANT_JAR" >&2; exit 2; }
export SPARKQUANT_JAR="$jar" EXECUTOR_MEMORY="${EXECUTOR_MEMORY:-2g}" EXECUTOR_CORES="${EXECUTOR_CORES:-1}"
scratch="${scratch%/}"

step() { echo "smoke-test-cluster: $*" >&2; }
fail() { echo "smoke-test-cluster: FAILED: $*" >&2; exit 1; }

# Hadoop's FsShell from the jars at hand, for the files sparkquant has no command for; the fs.* settings given for
# sparkquant apply to it too.
fs_options=()
for (( i = 0; i < ${#settings[@]}; i++ )); do
  if [[ "${settings[$i]}" == --conf && $(( i + 1 )) -lt ${#settings[@]} ]]; then
    kv="${settings[$((i + 1))]}"
    case "$kv" in
      fs.*) fs_options+=(-D "$kv") ;;
      spark.hadoop.fs.*) fs_options+=(-D "${kv#spark.hadoop.}") ;;
    esac
  fi
done
# FsShell insists on a core-site.xml on the classpath: an empty one stands in when HADOOP_CONF_DIR has none.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo '<configuration/>' > "$tmp/core-site.xml"
fs() {
  "${JAVA_HOME:+$JAVA_HOME/bin/}java" -cp "${HADOOP_CONF_DIR:+$HADOOP_CONF_DIR:}$tmp:$jar:$SPARK_HOME/jars/*" \
    org.apache.hadoop.fs.FsShell "${fs_options[@]}" "$@" 2> >(grep -v -e NativeCodeLoader -e '^WARNING' >&2)
}

# A sparkquant command through deploy/spark-submit.sh; the first argument is the master.
submit() {
  local m="$1"; shift
  "$here/spark-submit.sh" --master "$m" "$@"
}

quantize_options=(--samples 8 --seq-len 64 --samples-per-partition 2 --overwrite)

if [[ -z "$model" ]]; then
  model="$scratch/model"
  calibration="$scratch/calibration.txt"
  step "generating a tiny llama at $model"
  submit "local[1]" -- generate --output "$model" --layers 2 --overwrite "${settings[@]}" >/dev/null \
    || fail "generate (writing to $model)"
  text="$tmp/calibration.txt"
  for i in $(seq 1 200); do
    echo "Line $i of the smoke test: a cluster quantizes a small model, and every executor computes the same bits."
  done > "$text"
  step "writing calibration text to $calibration"
  fs -put -f "$text" "$calibration" || fail "writing $calibration"
fi

step "quantizing on one local core (the reference): $scratch/local"
submit "local[1]" -- quantize --model "$model" --calibration "$calibration" --output "$scratch/local" \
  "${quantize_options[@]}" "${settings[@]}" >/dev/null || fail "the local reference run"

step "quantizing on $master ($deploy_mode deploy mode): $scratch/cluster"
cluster_submit=(--deploy-mode "$deploy_mode")
# A standalone cluster-mode submit returns once the driver started unless told to wait for it.
[[ "$deploy_mode" == cluster ]] && cluster_submit+=(--conf spark.standalone.submit.waitAppCompletion=true)
submit "$master" "${cluster_submit[@]}" -- quantize --model "$model" --calibration "$calibration" \
  --output "$scratch/cluster" "${quantize_options[@]}" "${settings[@]}" >/dev/null || fail "the cluster run"

step "verifying $scratch/cluster"
submit "local[1]" -- verify --model "$scratch/cluster" "${settings[@]}" >/dev/null || fail "verify of the cluster's output"

# The manifests list every file's size and SHA-256; the reports (JSON, HTML) hold timings, so they differ.
checksums() {
  fs -cat "$1/_SUCCESS" | tr -d ' ,' | grep -E '^"(file|size|sha256)"' | paste - - - \
    | grep -v '^"file":"quantization_report\.'
}
local_sums="$(checksums "$scratch/local")" || fail "reading $scratch/local/_SUCCESS"
cluster_sums="$(checksums "$scratch/cluster")" || fail "reading $scratch/cluster/_SUCCESS"
[[ -n "$local_sums" ]] || fail "no files listed in $scratch/local/_SUCCESS"
if [[ "$local_sums" != "$cluster_sums" ]]; then
  diff <(echo "$local_sums") <(echo "$cluster_sums") >&2 || true
  fail "the cluster's output differs from the local run's (above: local <, cluster >)"
fi

if [[ "$keep" == false ]]; then
  step "deleting the scratch files"
  fs -rm -r -f "$scratch/local" "$scratch/cluster" >/dev/null
  [[ "$model" == "$scratch/model" ]] && fs -rm -r -f "$scratch/model" "$scratch/calibration.txt" >/dev/null
fi
echo "cluster smoke test passed: $master ($deploy_mode) wrote the same $(echo "$local_sums" | wc -l) files as a local run"
