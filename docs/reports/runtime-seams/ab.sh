#!/usr/bin/env bash
# A/B decode timing of two builds of `kernels`, alternating processes (the host's bandwidth drifts
# within minutes: only alternated pairs count).
#   [ROUNDS=8 SYNTH_ROUNDS=6] OLD=/path/to/old/kernels.dll NEW=src/Cli/bin/Release/net10.0/kernels.dll bash docs/reports/runtime-seams/ab.sh OUT
# Builds the old commit with: git worktree add /tmp/base REV && (cd /tmp/base && dotnet build src/Cli/Cli.csproj -c Release)
set -euo pipefail
out=${1:?output folder}
NEW=${NEW:-src/Cli/bin/Release/net10.0/kernels.dll}
OLD=${OLD:?path of the old kernels.dll}
MODEL=${MODEL:-/tmp/kernels-peers/tinyllama/f16.gguf}   # kernels synth --shape tinyllama --type f16 --out ...
mkdir -p "$out"
for r in $(seq 1 "${ROUNDS:-8}"); do   # the llama.cpp-compatible TinyLlama F16 GGUF, loaded into huge pages
  for side in new old; do
    dll=$NEW; [ "$side" = old ] && dll=$OLD
    dotnet "$dll" bench --model "$MODEL" --decode-tokens 24 --prefill-tokens 64 --json "$out/$side-$r.json" > "$out/$side-$r.txt" 2>&1
  done
done
for r in $(seq 1 "${SYNTH_ROUNDS:-6}"); do   # bench's in-memory synthetic models: dense, 2:4 and 4:8 F16, 8 layers
  for side in new old; do
    dll=$NEW; [ "$side" = old ] && dll=$OLD
    dotnet "$dll" bench --types f16 --layers 8 --decode-tokens 24 --prefill-tokens 32 --json "$out/s-$side-$r.json" --chart "$out/s.png" > "$out/s-$side-$r.txt" 2>&1
  done
done
