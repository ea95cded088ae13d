#!/usr/bin/env bash
# A --shape 7b (32 layers) model with every block linear 2:4-pruned (magnitude) and 4-bit kept
# values, written directly as a compact N:M file by `kernels synth --sparse 2:4 --quantize q4`
# (embedding Q4_0, classifier Q8_0), then run: peak RSS of `kernels generate` (load + 8 tokens)
# and `kernels bench --model` decode speed, 2 threads.
# usage: docs/reports/nm-format/7b-resident.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/../../.."
work=${1:-${TMPDIR:-/tmp}/kernels-7b}
mkdir -p "$work"
dotnet publish src/Cli/Cli.csproj -c Release -o "$work/cli" --nologo -v quiet >/dev/null
K="$work/cli/kernels"
f="$work/7b-q4-2of4-nm.gguf"
if [ ! -s "$f" ]; then
  /usr/bin/time -o "$work/synth-time.txt" -f "%e %M" "$K" synth --shape 7b --type f16 --sparse 2:4 --quantize q4 --out "$f" >"$work/synth.log" 2>&1
  read -r secs kb <"$work/synth-time.txt"
  echo "written in $secs s, peak RSS of the writer $(awk -v k="$kb" 'BEGIN { printf "%.2f", k * 1024 / 1e9 }') GB"
fi
bytes=$(stat -c %s "$f")
for run in 1 2; do
  /usr/bin/time -o "$work/run-time.txt" -f "%e %M" "$K" generate --model "$f" --prompt "Once upon a time" --steps 8 --temperature 0 >/dev/null 2>"$work/generate.log"
  read -r secs kb <"$work/run-time.txt"
  awk -v b="$bytes" -v s="$secs" -v k="$kb" 'BEGIN { printf "file %.3f GB; generate (load + 8 tokens) %.1f s, peak RSS %.3f GB (%.2fx the file)\n", b / 1e9, s, k * 1024 / 1e9, k * 1024 / b }'
done
KERNELS_THREADS=2 "$K" bench --model "$f" --decode-tokens 16 --prefill-tokens 0 2>&1 | grep -E " decode " | head -1
