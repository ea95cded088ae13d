#!/usr/bin/env bash
# GPU bundle for machines without .NET:
#   bash bench/gpu/run.sh pack      here: publish a self-contained linux-x64 build of `kernels`
#                                   and pack it into out/gpu-bundle.tar.gz (must stay under 60 MB)
#   bash bench/gpu/run.sh device    there: unpack, run the GPU kernel checks, the kernel timings
#                                   and the end-to-end bench on CUDA; results land in $OUT (or ./gpu-results)
# With the `device` tool: run `pack` here, then run `bash bench/gpu/run.sh device` there with
# carry ["out/gpu-bundle.tar.gz"]. The device run, in order (each step's output in $OUT):
#   gpu-selftest; gpu-bench (dense / 2:4 / 4:8 in F32 and F16, Q8_0 / Q4_0 dense and 2:4);
#   bench on synthetic TinyLlama-shaped models; bench on TinyLlama-shaped GGUFs written there
#   (F16, Q8_0, 2:4 F16, 2:4 Q8_0); torch.matmul FP16 (cuBLAS) and PyTorch 2:4 on gpu-bench's
#   shapes (torch_matmul.py); with LLAMA_CUDA=1 (and `pack` run with LLAMA_SRC=the llama.cpp
#   tarball), llama.cpp's CUDA llama-bench on the same F16 and Q8_0 files.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-pack}
bundle=out/gpu-bundle.tar.gz

case "$mode" in
  pack)
    rm -rf out/gpu
    dotnet publish src/Cli/Cli.csproj -c Release -r linux-x64 --self-contained true \
      -p:PublishSingleFile=false -p:DebugType=none -o out/gpu/kernels
    # The Llama-2 SentencePiece model names the synthetic GGUFs' vocabulary there (no ../shared on the device).
    mkdir -p out/gpu/kernels/vocab
    cp ../shared/data/tokenizer.model out/gpu/kernels/vocab/tokenizer.model
    cp bench/gpu/torch_matmul.py out/gpu/kernels/
    if [ -n "${LLAMA_SRC:-}" ]; then
      cp "$LLAMA_SRC" out/gpu/kernels/llama.cpp.tar.xz
    fi
    tar -C out/gpu -czf "$bundle" kernels
    size=$(stat -c %s "$bundle")
    echo "bundle: $bundle ($((size / 1024 / 1024)) MB)"
    if [ "$size" -ge $((60 * 1024 * 1024)) ]; then
      echo "bundle is over 60 MB" >&2
      exit 1
    fi
    ;;
  device)
    results=${OUT:-$PWD/gpu-results}
    # DEVICE=ilgpu-cpu SMALL=1 smoke-tests this script on a machine without a GPU (small shapes).
    device=${DEVICE:-cuda}
    small=()
    shape=()
    if [ "${SMALL:-0}" = 1 ]; then small=(--small); shape=(--shape small --layers 2); fi
    mkdir -p "$results" /tmp/kernels-gpu
    tar -C /tmp/kernels-gpu -xzf "$bundle"
    k=/tmp/kernels-gpu/kernels/kernels
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$results/gpu.txt" || true
    status=0
    "$k" gpu-selftest --device "$device" 2>&1 | tee "$results/selftest.txt" || status=1
    "$k" gpu-bench --device "$device" ${small[@]+"${small[@]}"} --json "$results/gpu-bench.json" 2>&1 | tee "$results/gpu-bench.txt" || status=1
    "$k" bench --device "$device" ${shape[@]+"${shape[@]}"} --types f32,f16 --decode-tokens 16 --prefill-tokens 256 \
      --json "$results/bench-cuda.json" --chart "$results/bench-cuda.png" 2>&1 | tee "$results/bench-cuda.txt" || status=1
    # The same TinyLlama shape as files: F16, Q8_0, 2:4 F16, 2:4 Q8_0 (decode timed round-robin).
    models=/tmp/kernels-gpu/models
    mkdir -p "$models"
    vocab=/tmp/kernels-gpu/kernels/vocab/tokenizer.model
    "$k" synth ${shape[@]+"${shape[@]}"} --type f16 --vocab "$vocab" -o "$models/tl-f16.gguf" || status=1
    "$k" synth ${shape[@]+"${shape[@]}"} --type f16 --quantize q8 --vocab "$vocab" -o "$models/tl-q8_0.gguf" || status=1
    "$k" synth ${shape[@]+"${shape[@]}"} --type f16 --sparse 2:4 --vocab "$vocab" -o "$models/tl-2_4-f16.gguf" || status=1
    "$k" synth ${shape[@]+"${shape[@]}"} --type f16 --sparse 2:4 --quantize q8 --vocab "$vocab" -o "$models/tl-2_4-q8_0.gguf" || status=1
    "$k" bench --device "$device" -m "$models/tl-f16.gguf" -m "$models/tl-q8_0.gguf" -m "$models/tl-2_4-f16.gguf" -m "$models/tl-2_4-q8_0.gguf" \
      --decode-tokens 32 --prefill-tokens 128 --profile --json "$results/bench-files-cuda.json" --chart "$results/bench-files-cuda.png" 2>&1 | tee "$results/bench-files-cuda.txt" || status=1
    python3 /tmp/kernels-gpu/kernels/torch_matmul.py "$results/torch-matmul.json" 2>&1 | tee "$results/torch-matmul.txt" || status=1
    if [ "${LLAMA_CUDA:-0}" = 1 ] && [ -f /tmp/kernels-gpu/kernels/llama.cpp.tar.xz ]; then
      # llama.cpp's CUDA backend on the same files, where it builds (one architecture: the device's).
      src=/tmp/kernels-gpu/llama.cpp
      mkdir -p "$src" && tar -C "$src" --strip-components=1 -xJf /tmp/kernels-gpu/kernels/llama.cpp.tar.xz
      if timeout "${LLAMA_BUILD_S:-420}" bash -c "cmake -S '$src' -B '$src/build' -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=native -DLLAMA_CURL=OFF >/dev/null && cmake --build '$src/build' -j --target llama-bench >/dev/null" \
          > "$results/llama-cuda-build.txt" 2>&1; then
        "$src/build/bin/llama-bench" -m "$models/tl-f16.gguf" -m "$models/tl-q8_0.gguf" -ngl 99 -p 128 -n 32 -r 3 -o json \
          > "$results/llama-bench-cuda.json" 2>> "$results/llama-cuda-build.txt" || status=1
      else
        echo "llama.cpp CUDA build did not finish in ${LLAMA_BUILD_S:-420} s (see llama-cuda-build.txt)" | tee -a "$results/llama-cuda-build.txt"
      fi
    fi
    exit $status
    ;;
  *)
    echo "usage: run.sh pack|device" >&2
    exit 2
    ;;
esac
