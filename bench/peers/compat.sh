#!/usr/bin/env bash
# Model families side by side with llama.cpp (not run by CI; results in docs/reports/compat/).
#
#   bash bench/peers/compat.sh [--families llama3,qwen2,smollm2,mistral] [--shape small] [--layers 2] [--type f32] [--out DIR]
#
# 1. Builds llama.cpp once (../shared/peers/build-llama-cpp.sh), compiles bench/peers/teacher-forced.cpp
#    against its libllama, and publishes this project's CLI and bench tool into the work folder.
# 2. For each family writes a synthetic fixture with `kernels synth --family` (the project's own GGUF
#    writer: Llama 3.1 RoPE scaling as a rope_freqs tensor, Qwen2's biases and half-split Q/K rows,
#    tied embeddings, a tiny byte-level or SentencePiece vocabulary of the family's kind).
# 3. Tokenizes one English paragraph with both engines (`kernels tokenize`, llama.cpp's llama_tokenize)
#    and compares the ids; runs both teacher-forced over those ids (llama.cpp: one batch, logits of every
#    position) and compares next-token argmax over the first 64 positions and the largest logit difference
#    (`Kernels.Bench compat`).
# 4. Writes DIR/README.md and DIR/results.json; raw files stay in the work folder.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
families=llama3,qwen2,smollm2,mistral shape=small layers=2 type=f32 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --families) families=$2; shift 2 ;;
    --shape) shape=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    --type) type=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=${out:-$repo/docs/reports/compat}
for tool in cmake g++ dotnet python3; do
  command -v "$tool" >/dev/null 2>&1 || { echo "$tool is missing" >&2; exit 1; }
done
builder="$repo/../shared/peers/build-llama-cpp.sh"
[ -f "$builder" ] || { echo "$builder not found: the llama.cpp source comes from ../shared/peers beside the repository" >&2; exit 1; }

work=${TMPDIR:-/tmp}/kernels-peers/compat
mkdir -p "$work" "$out"
echo "== llama.cpp (built once)"
B=$(bash "$builder")
L=$(cd "$B/../.." && pwd)
g++ -O2 -std=c++17 -I"$L/include" -I"$L/ggml/include" "$repo/bench/peers/teacher-forced.cpp" \
  -L"$B" -lllama -lggml -lggml-base -Wl,-rpath,"$B" -o "$work/teacher-forced"
echo "== kernels CLI and bench tool -> $work"
dotnet publish "$repo/src/Cli/Cli.csproj" -c Release -o "$work/cli" --nologo -v quiet >"$work/publish.log" 2>&1 || { tail -20 "$work/publish.log" >&2; exit 1; }
dotnet build "$repo/bench/Kernels.Bench/Kernels.Bench.csproj" -c Release -o "$work/bench" --nologo -v quiet >"$work/bench.log" 2>&1 || { tail -20 "$work/bench.log" >&2; exit 1; }
K="$work/cli/kernels"

text="$work/text.txt"
printf '%s' "Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends, and the sun was warm. One day she found 3 shiny stones near the river!" > "$text"

rows=()
for family in ${families//,/ }; do
  f="$work/$family.gguf"
  echo "== $family"
  "$K" synth --family "$family" --shape "$shape" --layers "$layers" --type "$type" --out "$f"
  "$K" tokenize --model "$f" --file "$text" --no-parse-special > "$work/$family.ids"
  "$work/teacher-forced" "$f" --tokenize "$text" > "$work/$family.peer.ids" 2>"$work/$family.peer.log"
  same_ids=false
  [ "$(tr -s ' \n' ' ' < "$work/$family.ids")" = "$(tr -s ' \n' ' ' < "$work/$family.peer.ids")" ] && same_ids=true
  "$work/teacher-forced" "$f" "$work/$family.ids" "$work/$family.peer.f32" 2>>"$work/$family.peer.log"
  dotnet "$work/bench/Kernels.Bench.dll" compat "$f" "$work/$family.ids" "$work/$family.peer.f32" "$work/$family.json" 64
  rows+=("$family $same_ids $(wc -w < "$work/$family.ids")")
done

python3 - "$out" "$work" "$shape" "$layers" "$type" "$(git -C "$repo" rev-parse --short HEAD)" "${rows[@]}" <<'PY'
import json, os, sys
out, work, shape, layers, dtype, rev = sys.argv[1:7]
results = []
for row in sys.argv[7:]:
    family, same_ids, n = row.split()
    r = json.load(open(os.path.join(work, family + ".json")))
    results.append({"family": family, "tokens": int(n), "same_token_ids": same_ids == "true", **{k: r[k] for k in ("positions", "argmax_agree", "max_abs_logit_diff", "mean_abs_logit_diff", "max_abs_logit")}, "disagreements": r["disagreements"]})
json.dump({"shape": shape, "layers": int(layers), "type": dtype, "commit": rev, "results": results}, open(os.path.join(out, "results.json"), "w"), indent=2)
lines = ["# Model families against llama.cpp", "",
         f"Command: `bash bench/peers/compat.sh` (commit {rev}): synthetic `{shape}` fixtures with {layers} layers, {dtype} weights,",
         "written by `kernels synth --family`; llama.cpp b4747 through `bench/peers/teacher-forced.cpp` (libllama, one batch,",
         "2 threads). Token ids: `kernels tokenize` against llama.cpp's `llama_tokenize` on the same paragraph. Logits:",
         "both engines teacher-forced over those ids; next-token argmax and logit differences over the first 64 positions.", "",
         "| family | what the fixture exercises | tokens | same ids | argmax agrees | max abs logit diff | mean abs diff | largest abs logit |",
         "| --- | --- | ---: | :---: | ---: | ---: | ---: | ---: |"]
what = {"llama3": "rope base 500000, Llama 3.1 scaling (rope_freqs), tied embeddings, llama-bpe BPE",
        "qwen2": "Q/K/V biases, half-split Q/K rows (NEOX), rope base 1e6, tied embeddings, qwen2 BPE",
        "smollm2": "llama with tied embeddings, smollm BPE",
        "mistral": "llama with sliding_window metadata (inside the window), SentencePiece"}
for r in results:
    lines.append(f"| {r['family']} | {what.get(r['family'], '')} | {r['tokens']} | {'yes' if r['same_token_ids'] else 'NO'} | {r['argmax_agree']}/{r['positions']} | {r['max_abs_logit_diff']:.2e} | {r['mean_abs_logit_diff']:.2e} | {r['max_abs_logit']:.2f} |")
lines += ["", "Raw files (fixtures, ids, llama.cpp logits, per-family JSON) stay in the work folder, `$TMPDIR/kernels-peers/compat`."]
open(os.path.join(out, "README.md"), "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
