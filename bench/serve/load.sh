#!/usr/bin/env bash
# Load on `kernels serve` (not run by CI; results in docs/reports/serve/).
#
#   bash bench/serve/load.sh [--requests 16] [--max-tokens 32] [--levels 1,4,8] [--out DIR]
#
# For each model (stories260K from ../shared/data, and a synthetic TinyLlama-shaped F16 GGUF
# written by `kernels synth --shape tinyllama --type f16`) and each level N of concurrent clients:
# starts `kernels serve --parallel N` on a free port, runs `Kernels.Bench serve-load` (N clients,
# streaming chat completions, greedy, each a different prompt), and stops the server. Writes
# DIR/README.md and DIR/results.json; the raw outputs stay in the work folder.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
requests=16 max_tokens=32 levels=1,4,8 out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --requests) requests=$2; shift 2 ;;
    --max-tokens) max_tokens=$2; shift 2 ;;
    --levels) levels=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
out=${out:-$repo/docs/reports/serve}
work=${TMPDIR:-/tmp}/kernels-serve-load
mkdir -p "$work" "$out"
echo "== kernels CLI and bench tool -> $work"
dotnet publish "$repo/src/Cli/Cli.csproj" -c Release -o "$work/cli" --nologo -v quiet >"$work/publish.log" 2>&1 || { tail -20 "$work/publish.log" >&2; exit 1; }
dotnet build "$repo/bench/Kernels.Bench/Kernels.Bench.csproj" -c Release -o "$work/bench" --nologo -v quiet >"$work/bench.log" 2>&1 || { tail -20 "$work/bench.log" >&2; exit 1; }
K="$work/cli/kernels"
stories="$repo/../shared/data/stories260K.gguf"
[ -f "$stories" ] || { echo "$stories not found" >&2; exit 1; }
tiny="$work/tinyllama-f16.gguf"
[ -s "$tiny" ] || "$K" synth --shape tinyllama --type f16 --out "$tiny"

port=18480
rows=()
for model in stories260K tinyllama; do
  file=$stories; [ "$model" = tinyllama ] && file=$tiny
  for n in ${levels//,/ }; do
    port=$((port + 1))
    "$K" serve --model "$file" --chat-template llama-2 --port "$port" --parallel "$n" --ctx-size 512 >"$work/serve-$model-$n.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
      curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
      sleep 0.2
    done
    echo "== $model, $n clients"
    dotnet "$work/bench/Kernels.Bench.dll" serve-load "http://127.0.0.1:$port" "$n" "$requests" "$max_tokens" "$work/$model-$n.json"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    rows+=("$model $n")
  done
done

python3 - "$out" "$work" "$requests" "$max_tokens" "$(git -C "$repo" rev-parse --short HEAD)" "$(nproc)" "${rows[@]}" <<'PY'
import json, os, sys
out, work, requests, max_tokens, rev, cores = sys.argv[1:7]
results = []
for row in sys.argv[7:]:
    model, n = row.split()
    r = json.load(open(os.path.join(work, f"{model}-{n}.json")))
    results.append({"model": model, **r})
json.dump({"commit": rev, "cores": int(cores), "results": results}, open(os.path.join(out, "results.json"), "w"), indent=2)
lines = ["# `kernels serve` under load", "",
         f"Command: `bash bench/serve/load.sh` (commit {rev}, {cores} cores, 2 kernel threads per process as the host allows).",
         f"Each level N starts `kernels serve --parallel N --ctx-size 512 --chat-template llama-2` and runs N concurrent",
         f"clients, {requests} streaming chat completions in all, greedy, {max_tokens} tokens at most each, every prompt different",
         "(`Kernels.Bench serve-load`; one warm-up request first). TTFT runs from sending the request to the first",
         "content event; latency to the last event.", "",
         "| model | clients | req/s | generated tok/s | TTFT p50 ms | TTFT p95 ms | latency p50 ms | latency p95 ms |",
         "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for r in results:
    lines.append(f"| {r['model']} | {r['clients']} | {r['requests_per_s']:.2f} | {r['generated_tokens_per_s']:.1f} | {r['ttft_ms_p50']:.0f} | {r['ttft_ms_p95']:.0f} | {r['latency_ms_p50']:.0f} | {r['latency_ms_p95']:.0f} |")
# Hand-written reading of the numbers below the marker survives a rerun.
readme = os.path.join(out, "README.md")
tail = ""
if os.path.exists(readme):
    text = open(readme).read()
    if "<!-- analysis -->" in text:
        tail = "\n" + text[text.index("<!-- analysis -->"):]
open(readme, "w").write("\n".join(lines) + "\n" + tail)
print("\n".join(lines))
PY
