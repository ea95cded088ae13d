#!/usr/bin/env bash
# stories260K quality of the quantized and N:M-quantized models: perplexity on the llama2.c
# reference span (first 16178 bytes of tinystories_valid_sample.txt, 256-token windows; F32 4.4935).
# Pruning calibrates on bytes 100000:400000 of the same file (disjoint from the scored span).
# usage: docs/reports/quantized/stories260k-quality.sh > docs/reports/quantized/stories260k-quality.md
set -euo pipefail
cd "$(dirname "$0")/../../.."
data=../shared/data
work=$(mktemp -d /tmp/s260k-quality.XXXXXX)
trap 'rm -rf "$work"' EXIT
dotnet build src/Cli -c Release -v q -nologo >/dev/null
kernels() { dotnet src/Cli/bin/Release/net10.0/kernels.dll "$@"; }
ppl() { kernels perplexity --model "$1" --text $data/tinystories_valid_sample.txt --context 256 --max-bytes 16178 --json "$work/p.json" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
        python3 -c "import json; print('%.4f' % json.load(open('$work/p.json'))['perplexity'])"; }
formats() { grep -o 'sparse: .*' "$work/err" | head -n 1 || true; }
calib=(--calibration $data/tinystories_valid_sample.txt --calibration-bytes 100000:400000)
base=$(ppl $data/stories260K.gguf)
echo "# stories260K: quantized and N:M + quantized perplexity"
echo
echo "Command: \`docs/reports/quantized/stories260k-quality.sh\`. Perplexity of tinystories_valid_sample.txt bytes 0:16178, context 256."
echo "ffn_down (172 columns) is not whole blocks of 32: it stays F32 in every quantized file (llama-quantize b4747 refuses this model for Q8_0/Q4_0)."
echo
echo "| model | perplexity | vs F32 | formats at run time (--sparse auto) |"
echo "| --- | ---: | ---: | --- |"
row() { printf "| %s | %s | %+.2f %% | %s |\n" "$1" "$2" "$(python3 -c "print(($2 / $base - 1) * 100)")" "$3"; }
row "F32" "$base" ""
for t in q8_0 q4_0; do
  kernels quantize $data/stories260K.gguf "$work/$t.gguf" --type $t --fallback f32 2>/dev/null
  row "$t (kernels quantize)" "$(ppl "$work/$t.gguf")" ""
done
for method in magnitude dass; do
  for pattern in 2:4 4:8; do
    for scope in mlp all; do
      [ "$method" = magnitude ] && [ "$scope" = mlp ] && continue
      [ "$method" = dass ] && [ "$scope" = all ] && continue
      for q in none q8 q4; do
        flag=(); [ "$q" != none ] && flag=(--quantize $q)
        kernels prune -m $data/stories260K.gguf --method $method --pattern $pattern --scope $scope "${calib[@]}" "${flag[@]}" -o "$work/p.gguf" >/dev/null 2>&1
        value=$(ppl "$work/p.gguf")
        row "$method $pattern $scope + ${q/none/F32}" "$value" "$(formats)"
      done
    done
  done
done
