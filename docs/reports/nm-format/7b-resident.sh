#!/usr/bin/env bash
# A --shape 7b (32 layers) model pruned 2:4 (magnitude, every block linear) with 4-bit kept values,
# written as a compact N:M file, then run: peak RSS of `kernels generate` (load + 8 tokens) and
# `kernels bench --model` decode speed. Needs ~14 GB of disk and memory for the F16 source,
# which is deleted once pruned.
# usage: docs/reports/nm-format/7b-resident.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
work=${1:-${TMPDIR:-/tmp}/kernels-7b}
mkdir -p "$work"
dotnet publish src/Cli/Cli.csproj -c Release -o "$work/cli" --nologo -v quiet >/dev/null
K="$work/cli/kernels"
if [ ! -s "$work/7b-q4-2of4-nm.gguf" ]; then
  [ -s "$work/7b-f16.gguf" ] || "$K" synth --shape 7b --type f16 --out "$work/7b-f16.gguf" >/dev/null 2>&1
  /usr/bin/time -o "$work/prune-time.txt" -f "%e %M" "$K" prune --model "$work/7b-f16.gguf" --method magnitude --pattern 2:4 --scope all \
    --quantize q4 --format nm --out "$work/7b-q4-2of4-nm.gguf" >"$work/prune.log" 2>&1
  read -r secs kb <"$work/prune-time.txt"
  echo "pruned + written in $secs s, peak RSS $(awk -v k="$kb" 'BEGIN { printf "%.2f", k * 1024 / 1e9 }') GB"
  rm -f "$work/7b-f16.gguf"
fi
bytes=$(stat -c %s "$work/7b-q4-2of4-nm.gguf")
/usr/bin/time -o "$work/run-time.txt" -f "%e %M" "$K" generate --model "$work/7b-q4-2of4-nm.gguf" --prompt "Once upon a time" --steps 8 --temperature 0 >/dev/null 2>"$work/generate.log"
read -r secs kb <"$work/run-time.txt"
awk -v b="$bytes" -v s="$secs" -v k="$kb" 'BEGIN { printf "file %.3f GB; generate (load + 8 tokens) %.1f s, peak RSS %.3f GB (%.2fx the file)\n", b / 1e9, s, k * 1024 / 1e9, k * 1024 / b }'
KERNELS_THREADS=2 "$K" bench --model "$work/7b-q4-2of4-nm.gguf" --decode-tokens 8 --prefill-tokens 0 2>&1 | grep -E "decode|RSS" | head -3
