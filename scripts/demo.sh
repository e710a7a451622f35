#!/usr/bin/env bash
# The README's main job: install dependencies, build sluice, and run a model.
# With ../shared/assets beside the project it converts a real trained model
# (stories260K, from its llama2.c files) and generates from it; without, it
# makes a small random-weight model with `sluice synth` and runs that.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sluice
S=build/sluice
mkdir -p build/models
A=../shared/assets/models/stories260K
if [ -f "$A/stories260K.bin" ]; then
    echo "== converting stories260K (llama2.c) to GGUF"
    $S convert --llama2c "$A/stories260K.bin" --tokenizer "$A/tok512.bin" -o build/models/stories260K.gguf
    $S info build/models/stories260K.gguf
    echo "== greedy generation"
    $S run -m build/models/stories260K.gguf -p "Once upon a time" -n 64 --temp 0 -v
else
    echo "== ../shared/assets not found: making a small random-weight model instead"
    $S synth --preset tiny --type Q8_0 -o build/models/tiny.gguf
    $S info build/models/tiny.gguf
    $S run -m build/models/tiny.gguf -p "Hello" -n 32 --seed 1 -v
fi
