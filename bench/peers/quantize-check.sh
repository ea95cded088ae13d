#!/usr/bin/env bash
# Quantizes the same input with llama-quantize and `kernels quantize` (Q8_0, Q4_0, Q4_K, Q6_K; default and
# --pure) and compares every tensor byte for byte (bench/peers/gguf-tensor-diff.py).
# usage: bench/peers/quantize-check.sh [INPUT.gguf ...]   (default: ../shared/data/quant/tiny-f32.gguf
#        and a `kernels synth --shape small --type f16` file)
# Needs llama.cpp built by ../shared/peers/build-llama-cpp.sh (LLAMA_BIN overrides where).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${LLAMA_BIN:-$HOME/.cache/kernels-peers/llama.cpp-b4747/build/bin}
[ -x "$bin/llama-quantize" ] || { echo "llama-quantize not found in $bin (run ../shared/peers/build-llama-cpp.sh or set LLAMA_BIN)" >&2; exit 2; }
work=$(mktemp -d /tmp/quantize-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
dotnet build src/Cli -c Release -v q -nologo >/dev/null
kernels() { dotnet src/Cli/bin/Release/net10.0/kernels.dll "$@"; }
inputs=("$@")
if [ ${#inputs[@]} -eq 0 ]; then
  kernels synth --shape small --type f16 --out "$work/small-f16.gguf" >/dev/null 2>&1
  inputs=(../shared/data/quant/tiny-f32.gguf "$work/small-f16.gguf")
fi
status=0
for input in "${inputs[@]}"; do
  for type in Q8_0 Q4_0 Q4_K Q6_K; do
    for mode in default pure; do
      flag=(); [ "$mode" = pure ] && flag=(--pure)
      if ! "$bin/llama-quantize" "${flag[@]}" "$input" "$work/llama.gguf" "$type" >"$work/llama.log" 2>&1; then
        echo "== $(basename "$input") $type $mode: llama-quantize failed: $(grep -m1 -E 'GGML_ASSERT|failed|error' "$work/llama.log")"
        continue
      fi
      kernels quantize "$input" "$work/kernels.gguf" --type "$type" "${flag[@]}" 2>/dev/null
      echo "== $(basename "$input") $type $mode: $(python3 bench/peers/gguf-tensor-diff.py "$work/kernels.gguf" "$work/llama.gguf" | tail -n 1)"
      python3 bench/peers/gguf-tensor-diff.py "$work/kernels.gguf" "$work/llama.gguf" | grep -v identical | grep -v '^[0-9]* identical' || true
      python3 bench/peers/gguf-tensor-diff.py "$work/kernels.gguf" "$work/llama.gguf" >/dev/null || status=1
    done
  done
done
exit $status
