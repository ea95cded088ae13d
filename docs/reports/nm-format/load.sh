#!/usr/bin/env bash
# Load time and peak RSS of the same model as a dense F16 file, a standard 2:4 file (pruned zeros,
# compressed at load by --sparse auto) and the compact N:M file (prune --format nm), interleaved.
# Each run is `kernels generate --steps 1` (load, prefill 1 token, decode 1): wall time and peak RSS
# from /usr/bin/time. Uses the peer harness's TinyLlama files (bench/peers/llama-cpp.sh makes them).
# usage: docs/reports/nm-format/load.sh [WORK_DIR] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../../.."
work=${1:-${TMPDIR:-/tmp}/kernels-peers/tinyllama}
rounds=${2:-3}
K="$work/cli/kernels"
[ -x "$K" ] || { echo "$K not found: run bench/peers/llama-cpp.sh first (it publishes the CLI and writes the files)" >&2; exit 2; }
for f in f16 f16-2of4 q4-2of4; do [ -s "$work/$f.gguf" ] || { echo "$work/$f.gguf missing (bench/peers/llama-cpp.sh makes it)" >&2; exit 2; }; done
[ -s "$work/f16-2of4-nm.gguf" ] || "$K" prune --model "$work/f16.gguf" --method magnitude --pattern 2:4 --scope all --format nm --out "$work/f16-2of4-nm.gguf" >/dev/null 2>&1
[ -s "$work/q4-2of4-nm.gguf" ] || "$K" prune --model "$work/f16.gguf" --method magnitude --pattern 2:4 --scope all --quantize q4 --format nm --out "$work/q4-2of4-nm.gguf" >/dev/null 2>&1
echo "| round | file | bytes | load+1 token (s) | peak RSS (GB) | RSS / file |"
echo "| ---: | --- | ---: | ---: | ---: | ---: |"
for r in $(seq 1 "$rounds"); do
  for f in f16 f16-2of4 f16-2of4-nm q4-2of4 q4-2of4-nm; do
    file="$work/$f.gguf"
    bytes=$(stat -c %s "$file")
    /usr/bin/time -o "$work/load-time.txt" -f "%e %M" "$K" generate --model "$file" --prompt "Once" --steps 1 --temperature 0 >/dev/null 2>&1
    read -r secs kb <"$work/load-time.txt"
    awk -v r="$r" -v f="$f" -v b="$bytes" -v s="$secs" -v k="$kb" 'BEGIN { printf "| %d | %s | %.3f GB | %.2f | %.2f | %.2fx |\n", r, f, b / 1e9, s, k * 1024 / 1e9, k * 1024 / b }'
  done
done
