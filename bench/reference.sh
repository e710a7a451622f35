#!/usr/bin/env bash
# reference.sh - sluice against llama.cpp's reference figures for this
# machine kind (../shared/bench/llamacpp-reference.md): every shape and type
# of that table, 1 and 2 threads, pp64 / pp512 / tg128, in one run.
#
#   bash bench/reference.sh SLUICE MODEL_DIR OUT_DIR [REPS]
#
# MODEL_DIR holds the benchmark files, named SHAPE-TYPE.gguf (smollm2-Q4_0,
# qwen-Q4_K_M, tinyllama-F16, ...); make them from their recipes with
#   sluice synth --preset qwen2.5-0.5b --type F16 -o qwen-F16.gguf
#   sluice quantize qwen-F16.gguf qwen-Q4_K_M.gguf Q4_K_M
# A missing file is skipped. Each file's `sluice bench --json` goes to
# OUT_DIR, then bench/reference-table.mjs prints the markdown table (sluice,
# ratio to llama.cpp, fraction of the bandwidth measured in the same run)
# that goes into docs/performance.md. Run it on a quiet machine: nothing
# else compiling or testing (`uptime` load under 1), several repetitions.
set -euo pipefail
S=$1 M=$2 OUT=$3 REPS=${4:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
REF=$HERE/../../shared/bench/llamacpp-reference.md
mkdir -p "$OUT"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
for shape in smollm2 qwen tinyllama; do
    for type in Q4_0 Q8_0 Q4_K_M F16; do
        f=$M/$shape-$type.gguf
        [ -f "$f" ] || { echo "skip: $f not found" >&2; continue; }
        echo "== $shape $type" >&2
        "$S" bench -m "$f" -p 64,512 -n 128 -t 1,2 -r "$REPS" -c 1024 --json "$OUT/$shape-$type.json" >&2
    done
done
node "$HERE/reference-table.mjs" "$REF" "$OUT"/*.json
