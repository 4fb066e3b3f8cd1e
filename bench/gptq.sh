#!/usr/bin/env bash
# GPTQ: Java (org.sparkquant.gptq) vs PyTorch (bench/gptq_torch.py, a transcription of AutoGPTQ's fasterquant),
# same W and H, same thread count, fp32, 4-bit, group 128. Prints both times and the ratio java/torch.
#
#   bench/gptq.sh                      # THREADS=2, SHAPES="4096x4096 4096x14336" (rows x cols = out x in)
#   THREADS=1 SHAPES=4096x4096 bench/gptq.sh
#   EXTRA="--desc-act" bench/gptq.sh   # act-order
# Needs a Python with torch and numpy: PYTHON=..., else SPARKQUANT_PYTHON (the tests' venv), else .venv of this
# checkout (bash python/setup-venv.sh .venv); and a compiled tree (runs mvn test-compile).
#
# OpenBLAS 0.3.19 (the one ND4J M2.1 ships) may misdetect the CPU: on this project's KVM Xeons (AVX-512, generic
# model name) it falls back to its Prescott (SSE3) kernels, 3-5x slower, and its AVX-512 (SkylakeX) kernels break
# dpotrf there (OpenBLAS issues #2986, #3454). Unless OPENBLAS_CORETYPE is set, this script uses Haswell (AVX2)
# kernels on CPUs with AVX2. Torch uses its own MKL.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
SHAPES=${SHAPES:-"4096x4096 4096x14336"}
PY=${PYTHON:-${SPARKQUANT_PYTHON:-$PWD/.venv/bin/python}}
DIR=${BENCH_DIR:-/tmp/sparkquant-gptq-bench}
EXTRA=${EXTRA:-}
mkdir -p "$DIR"
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=Haswell
fi

mvn -B -o -Dquick test-compile > "$DIR/mvn.log" 2>&1 || { tail -30 "$DIR/mvn.log"; exit 1; }
CP="target/classes:target/test-classes:$(cat target/test-classpath.txt)"

for shape in $SHAPES; do
  rows=${shape%x*}
  cols=${shape#*x}
  w="$DIR/W_${rows}x${cols}.npy"
  h="$DIR/H_${cols}.npy"
  # H = UUᵀ/r + diag(d): correlated with a spread diagonal (act-order matters), like a real layer Hessian.
  "$PY" - "$rows" "$cols" "$w" "$h" <<'PYEOF'
import os, sys, numpy as np
rows, cols, wpath, hpath = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = np.random.default_rng(cols)
if not os.path.exists(hpath):
    r = 256
    U = (rng.standard_normal((cols, r)) * np.exp(rng.normal(0, 0.5, (cols, 1)))).astype(np.float32)
    H = (U @ U.T) / r
    H[np.diag_indices(cols)] += np.exp(rng.normal(0, 1.0, cols)).astype(np.float32) * 0.1
    np.save(hpath, H.astype(np.float32))
if not os.path.exists(wpath):
    np.save(wpath, (rng.standard_normal((rows, cols)) * 0.02).astype(np.float32))
PYEOF
  echo "== GPTQ ${rows}x${cols} (out x in), H ${cols}^2, 4-bit g128 ${EXTRA}, threads=$THREADS," \
       "OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-auto}"
  torch_line=$(OMP_NUM_THREADS=$THREADS MKL_NUM_THREADS=$THREADS "$PY" bench/gptq_torch.py --w "$w" --h "$h" \
      --threads "$THREADS" --out "$DIR/codes_torch.npy" $EXTRA)
  echo "$torch_line"
  torch_ms=$(sed -E 's/.*total=([0-9.]+).*/\1/' <<< "$torch_line")
  OMP_NUM_THREADS=$THREADS java -Xmx14g -Dorg.bytedeco.javacpp.maxbytes=12g -Dorg.bytedeco.javacpp.maxphysicalbytes=20g \
      -Djava.util.concurrent.ForkJoinPool.common.parallelism=$((THREADS - 1)) \
      -cp "$CP" org.sparkquant.bench.GptqBench --w "$w" --h "$h" --torch-ms "$torch_ms" \
      --torch-codes "$DIR/codes_torch.npy" $EXTRA
done
