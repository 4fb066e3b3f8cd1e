#!/usr/bin/env bash
# GPTQ's in-batch update in FP32: float arrays (what gptq/GptqLoop runs) against doubles rounded to float after each
# operation (one code path for both precisions, same bits). Prints both times and the ratio, measured in this run.
#
#   bench/update-kernel.sh             # 2000 batches of 256 rows x 128 columns, best of 5 rounds, one thread
set -euo pipefail
cd "$(dirname "$0")/.."
mvn -B -o -q -Dquick test-compile >/dev/null
CP="target/classes:target/test-classes:$(cat target/test-classpath.txt)"
java -cp "$CP" org.sparkquant.bench.UpdateKernelBench "$@"
