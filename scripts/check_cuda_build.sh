#!/usr/bin/env bash
# Compile-checks huatu with `--features cuda` on a machine without a GPU or CUDA toolkit:
# CUDA 13.0's compiler (nvcc, nvvm, crt) and headers come from PyPI's nvidia-* wheels,
# installed into a virtualenv outside the repository. candle's kernels are compiled to PTX
# for CUDA_COMPUTE_CAP (default 90, H100/H200). Nothing runs on a GPU here; the binary
# it would link needs the NVIDIA driver at run time.
#
#   scripts/check_cuda_build.sh            # cargo check of the huatu binary with CUDA
#   CUDA_COMPUTE_CAP=89 scripts/check_cuda_build.sh build   # a release build instead
set -euo pipefail
cd "$(dirname "$0")/.."

tools=${HUATU_CUDA_TOOLS:-$HOME/.cache/huatu/cuda-13.0}
if [ ! -x "$tools/bin/python" ]; then
    python3 -m venv "$tools"
fi
# Every part pinned to 13.0: a newer nvvm emits PTX the 13.0 ptxas refuses.
"$tools/bin/pip" install --quiet \
    "nvidia-cuda-nvcc==13.0.*" "nvidia-nvvm==13.0.*" "nvidia-cuda-crt==13.0.*" \
    "nvidia-cuda-runtime==13.0.*" "nvidia-cuda-cccl==13.0.*"
cuda_root=$("$tools/bin/python" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13"))')

export CUDA_ROOT=$cuda_root CUDA_PATH=$cuda_root CUDA_TOOLKIT_ROOT_DIR=$cuda_root
export PATH=$cuda_root/bin:$PATH
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
# A separate target folder: the CUDA build shares nothing with the CPU one.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
nvcc --version | tail -1

case "${1:-check}" in
    check) cargo check --release -p huatu --features cuda ;;
    build) cargo build --release -p huatu --features cuda ;;
    *) echo "usage: $0 [check|build]" >&2; exit 2 ;;
esac
echo "ok: huatu compiles with --features cuda (CUDA 13.0, compute capability $CUDA_COMPUTE_CAP)"
