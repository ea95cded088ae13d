#!/usr/bin/env bash
# Side by side with llama.cpp on the same GGUF files (not run by CI; see README "Compared with llama.cpp").
#
#   bash bench/peers/llama-cpp.sh [--shape tinyllama|7b|small] [--layers N] [--rounds 5] [--out DIR] [--only f16,q4_0,...]
#
# 1. Builds llama.cpp once with ../shared/peers/build-llama-cpp.sh (needs cmake and g++) and
#    publishes this project's CLI into the work folder (so rebuilding the repository during a run
#    changes nothing).
# 2. Makes the files in $TMPDIR/kernels-peers/<shape> (never in the repository): `kernels synth`
#    F32/F16/BF16; `llama-quantize` Q8_0, Q4_0, Q4_K_M of the F16 file; `kernels prune --method
#    magnitude --pattern 2:4|4:8 --scope all [--quantize q8|q4]` of the F16 file (the quantized
#    ones are standard Q8_0/Q4_0 files llama.cpp runs dense). Existing files are reused.
# 3. Runs interleaved rounds: in every round, for each file, llama-bench tg (2 threads, mmap on
#    and off, 3 repetitions), then `kernels bench --model` decode, then llama-bench pp, then
#    `kernels bench --model` prefill: each engine's number within seconds of the other's. The
#    order of the files rotates from round to round.
# 4. Writes DIR (default docs/reports/peers/<shape>): README.md (per-round numbers, medians,
#    ratios to llama.cpp, the targets), results.json, decode.png, prefill.png; the raw outputs
#    stay in the work folder.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
shape=tinyllama layers="" rounds=5 out="" decode=32 prefill=256 threads=2 only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --decode-tokens) decode=$2; shift 2 ;;
    --prefill-tokens) prefill=$2; shift 2 ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown option '$1' (--shape, --layers, --rounds, --out, --only, --decode-tokens, --prefill-tokens)" >&2; exit 2 ;;
  esac
done
case "$shape" in tinyllama|7b|small) ;; *) echo "--shape must be tinyllama, 7b or small (got '$shape')" >&2; exit 2 ;; esac
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds must be a positive integer (got '$rounds')" >&2; exit 2; }
[ -z "$layers" ] || [[ "$layers" =~ ^[1-9][0-9]*$ ]] || { echo "--layers must be a positive integer (got '$layers')" >&2; exit 2; }
name=$shape${layers:+-${layers}L}
out=${out:-$repo/docs/reports/peers/$name}

for tool in cmake g++ dotnet; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing: llama.cpp is built with cmake and g++ (apt-get install -y cmake g++), the project with the .NET 10 SDK" >&2; exit 1; }
done
builder="$repo/../shared/peers/build-llama-cpp.sh"
[ -f "$builder" ] || { echo "$builder not found: the llama.cpp source comes from ../shared/peers beside the repository" >&2; exit 1; }

work=${TMPDIR:-/tmp}/kernels-peers/$name
mkdir -p "$work"
echo "== llama.cpp (built once)"
B=$(bash "$builder")
echo "   $B"
echo "== kernels CLI -> $work/cli"
dotnet publish "$repo/src/Cli/Cli.csproj" -c Release -o "$work/cli" --nologo -v quiet >"$work/publish.log" 2>&1 || { tail -20 "$work/publish.log" >&2; exit 1; }
K="$work/cli/kernels"

synth() {  # type
  local f="$work/$1.gguf"
  [ -s "$f" ] || "$K" synth --shape "$shape" ${layers:+--layers "$layers"} --type "$1" --out "$f" >&2
}
quantize() {  # id TYPE
  local f="$work/$1.gguf"
  [ -s "$f" ] || "$B/llama-quantize" "$work/f16.gguf" "$f" "$2" >"$work/quantize-$1.log" 2>&1 || { tail -5 "$work/quantize-$1.log" >&2; exit 1; }
}
prune() {  # id pattern [q8|q4]
  local f="$work/$1.gguf"
  [ -s "$f" ] || "$K" prune --model "$work/f16.gguf" --method magnitude --pattern "$2" --scope all ${3:+--quantize "$3"} --out "$f" >"$work/prune-$1.log" 2>&1 || { tail -5 "$work/prune-$1.log" >&2; exit 1; }
}
echo "== files in $work"
for t in f32 f16 bf16; do synth $t; done
quantize q8_0 Q8_0
quantize q4_0 Q4_0
quantize q4_k_m Q4_K_M
prune f16-2of4 2:4
prune f16-4of8 4:8
for q in q8 q4; do
  prune $q-2of4 2:4 $q
  prune $q-4of8 4:8 $q
done

# id, label, file, whether this runtime runs it
manifest="$work/manifest.tsv"
{
  printf 'f32\tF32\t%s\t1\n' "$work/f32.gguf"
  printf 'f16\tF16\t%s\t1\n' "$work/f16.gguf"
  printf 'bf16\tBF16\t%s\t1\n' "$work/bf16.gguf"
  printf 'f16-2of4\t2:4 F16\t%s\t1\n' "$work/f16-2of4.gguf"
  printf 'f16-4of8\t4:8 F16\t%s\t1\n' "$work/f16-4of8.gguf"
  printf 'q8_0\tQ8_0\t%s\t1\n' "$work/q8_0.gguf"
  printf 'q4_0\tQ4_0\t%s\t1\n' "$work/q4_0.gguf"
  printf 'q4_k_m\tQ4_K_M\t%s\t1\n' "$work/q4_k_m.gguf"
  printf 'q8-2of4\t2:4 Q8_0\t%s\t1\n' "$work/q8-2of4.gguf"
  printf 'q8-4of8\t4:8 Q8_0\t%s\t1\n' "$work/q8-4of8.gguf"
  printf 'q4-2of4\t2:4 Q4_0\t%s\t1\n' "$work/q4-2of4.gguf"
  printf 'q4-4of8\t4:8 Q4_0\t%s\t1\n' "$work/q4-4of8.gguf"
} >"$manifest"
mapfile -t ids < <(cut -f1 "$manifest")
if [ -n "$only" ]; then
  # A subset of the files (the report then covers those only).
  for id in ${only//,/ }; do
    grep -q "^$id"$'\t' "$manifest" || { echo "--only: unknown file id '$id' (ids: ${ids[*]})" >&2; exit 2; }
  done
  awk -F'\t' -v only=",$only," 'index(only, "," $1 ",") > 0' "$manifest" >"$manifest.only" && mv "$manifest.only" "$manifest"
  mapfile -t ids < <(cut -f1 "$manifest")
fi

raw="$work/raw"
rm -rf "$raw"
for r in $(seq 1 "$rounds"); do
  mkdir -p "$raw/r$r"
  count=${#ids[@]}
  for i in $(seq 0 $((count - 1))); do
    id=${ids[$(( (i + r - 1) % count ))]}
    file=$(awk -F'\t' -v id="$id" '$1 == id { print $3 }' "$manifest")
    runs=$(awk -F'\t' -v id="$id" '$1 == id { print $4 }' "$manifest")
    echo "== round $r/$rounds: $id"
    for phase in tg pp; do
      # llama-bench -p/-n and kernels --prefill-tokens/--decode-tokens of this phase
      if [ $phase = tg ]; then lp=0 ln=$decode kp=0 kn=$decode; else lp=$prefill ln=0 kp=$prefill kn=1; fi
      "$B/llama-bench" -m "$file" -p "$lp" -n "$ln" -r 3 -t "$threads" -mmp 0,1 -o json >"$raw/r$r/llama-$id-$phase.json" 2>"$raw/r$r/llama-$id-$phase.err" \
        || echo "   llama-bench $phase failed (see $raw/r$r/llama-$id-$phase.err)"
      if [ "$runs" = 1 ]; then
        KERNELS_THREADS=$threads "$K" bench --model "$file" --decode-tokens "$kn" --prefill-tokens "$kp" \
          --json "$raw/r$r/kernels-$id-$phase.json" --chart "$work/last-bench.png" >"$raw/r$r/kernels-$id-$phase.log" 2>&1 \
          || echo "   kernels bench $phase failed (see $raw/r$r/kernels-$id-$phase.log)"
      fi
    done
  done
done

mkdir -p "$out"
"$K" peer-report --raw "$raw" --manifest "$manifest" --out "$out" \
  --title "$name: llama.cpp b4747 vs kernels, $threads threads" \
  --command "bash bench/peers/llama-cpp.sh --shape $shape${layers:+ --layers $layers} --rounds $rounds${only:+ --only $only} --decode-tokens $decode --prefill-tokens $prefill"
echo "== report: $out/README.md"
