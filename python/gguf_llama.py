"""The real llama.cpp as a reference for sparkquant's GGUF tests: builds and runs small tools against the prebuilt
CPU libraries of the npm package @node-llama-cpp/linux-x64 3.22.1.

Tools (compiled once with g++ into a cache directory, from the llama.cpp source that build was made from):
  llama_harness   python/llama_harness.cpp: tokenize a text, logits of a sequence, per-window NLL, what
                  common_imatrix_load reads from an imatrix file, model metadata
  llama-quantize  llama.cpp's tools/quantize (what users run on sparkquant's F32/F16 exports and imatrix files)
  llama-imatrix   llama.cpp's tools/imatrix (the reference importance statistics)

Setup (once; the tests that need this skip when it is missing):
  npm install --prefix /tmp/nlc @node-llama-cpp/linux-x64@3.22.1      # the libraries (GGML_LIB_DIR)
  python python/gguf_llama.py setup-source                            # the matching llama.cpp source:
      runs `npm pack node-llama-cpp@3.22.1` and clones its llama/gitRelease.bundle into /tmp/llamacpp-src
Environment: GGML_LIB_DIR (default /tmp/nlc/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64),
  LLAMA_CPP_SRC (default /tmp/llamacpp-src), SPARKQUANT_LLAMA_TOOLS (build cache, default /tmp/sparkquant-llama-tools).

Usage:
  python python/gguf_llama.py build               prints the tool directory, or exits 3 when it cannot build
  python python/gguf_llama.py run TOOL ARGS...    runs a tool (absolute paths!) with the libraries' directory as
                                                  working directory, so ggml finds its CPU backends
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIB_DIR = Path(os.environ.get("GGML_LIB_DIR", "/tmp/nlc/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64"))
SRC = Path(os.environ.get("LLAMA_CPP_SRC", "/tmp/llamacpp-src"))
CACHE = Path(os.environ.get("SPARKQUANT_LLAMA_TOOLS", "/tmp/sparkquant-llama-tools"))
LIBS = ["-l:libllama-common.so", "-l:libllama.v0.5.0.so", "-l:libggml.v0.5.0.so", "-l:libggml-base.so"]
TOOLS = {
    "llama_harness": [ROOT / "python" / "llama_harness.cpp"],
    "llama-quantize": [SRC / "tools/quantize/quantize.cpp", SRC / "tools/quantize/main.cpp"],
    "llama-imatrix": [SRC / "tools/imatrix/imatrix.cpp"],
}


def fail(msg: str) -> None:
    print(msg, file=sys.stderr)
    sys.exit(3)


def build() -> Path:
    if not (LIB_DIR / "libllama.v0.5.0.so").exists():
        fail(f"no llama.cpp libraries in {LIB_DIR} (npm install --prefix /tmp/nlc @node-llama-cpp/linux-x64@3.22.1)")
    if not (SRC / "include/llama.h").exists():
        fail(f"no llama.cpp source in {SRC} (python python/gguf_llama.py setup-source)")
    if shutil.which("g++") is None:
        fail("no g++")
    h = hashlib.sha256()
    for files in TOOLS.values():
        for f in files:
            h.update(f.read_bytes())
    h.update(str(LIB_DIR).encode())
    out = CACHE / h.hexdigest()[:16]
    if all((out / t).exists() for t in TOOLS):
        return out
    out.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{SRC / d}" for d in ("include", "common", "ggml/include", "vendor")]
    for tool, sources in TOOLS.items():
        tmp = out / (tool + ".tmp")
        cmd = ["g++", "-O2", "-std=c++17", *includes, *map(str, sources), "-o", str(tmp), f"-L{LIB_DIR}", *LIBS,
               f"-Wl,-rpath,{LIB_DIR}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"cannot build {tool}:\n{r.stderr[-3000:]}")
        tmp.rename(out / tool)
    return out


def setup_source() -> None:
    if (SRC / "include/llama.h").exists():
        print(SRC)
        return
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(["npm", "pack", "node-llama-cpp@3.22.1"], cwd=d, check=True, capture_output=True)
        tgz = next(Path(d).glob("node-llama-cpp-*.tgz"))
        subprocess.run(["tar", "xzf", str(tgz)], cwd=d, check=True)
        bundle = Path(d) / "package/llama/gitRelease.bundle"
        subprocess.run(["git", "clone", "-q", str(bundle), str(SRC)], check=True)
    print(SRC)


def main() -> None:
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(1)
    if sys.argv[1] == "setup-source":
        setup_source()
    elif sys.argv[1] == "build":
        print(build())
    elif sys.argv[1] == "run":
        tools = build()
        env = dict(os.environ, GGML_LIB_DIR=str(LIB_DIR))
        r = subprocess.run([str(tools / sys.argv[2]), *sys.argv[3:]], cwd=LIB_DIR, env=env)
        sys.exit(r.returncode)
    else:
        print(__doc__)
        sys.exit(1)


if __name__ == "__main__":
    main()
