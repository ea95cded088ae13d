#!/usr/bin/env bash
# GPU bundle for machines without .NET:
#   bash bench/gpu/run.sh pack      here: publish a self-contained linux-x64 build of `kernels`
#                                   and pack it into out/gpu-bundle.tar.gz (must stay under 60 MB)
#   bash bench/gpu/run.sh device    there: unpack, run the GPU kernel checks, the kernel timings
#                                   and the end-to-end bench on CUDA; results land in $OUT (or ./gpu-results)
# With the `device` tool: run `pack` here, then run `bash bench/gpu/run.sh device` there with
# carry ["out/gpu-bundle.tar.gz"].
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-pack}
bundle=out/gpu-bundle.tar.gz

case "$mode" in
  pack)
    rm -rf out/gpu
    dotnet publish src/Cli/Cli.csproj -c Release -r linux-x64 --self-contained true \
      -p:PublishSingleFile=false -p:DebugType=none -o out/gpu/kernels
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
    mkdir -p "$results" /tmp/kernels-gpu
    tar -C /tmp/kernels-gpu -xzf "$bundle"
    k=/tmp/kernels-gpu/kernels/kernels
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$results/gpu.txt" || true
    status=0
    "$k" gpu-selftest --device cuda 2>&1 | tee "$results/selftest.txt" || status=1
    "$k" gpu-bench --device cuda --json "$results/gpu-bench.json" 2>&1 | tee "$results/gpu-bench.txt" || status=1
    "$k" bench --device cuda --types f32,f16 --decode-tokens 16 --prefill-tokens 256 \
      --json "$results/bench-cuda.json" --chart "$results/bench-cuda.png" 2>&1 | tee "$results/bench-cuda.txt" || status=1
    exit $status
    ;;
  *)
    echo "usage: run.sh pack|device" >&2
    exit 2
    ;;
esac
