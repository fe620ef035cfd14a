#!/usr/bin/env bash
# owl's main job: pull a small reasoning model from the Hugging Face hub and ask it something,
# its reasoning shown apart from its answer. Offline, owl fails at once and says how to run a
# local file; the demo then runs the small real model that sits in ../shared instead.
set -euo pipefail
owl=${1:-build/owl}
shared=${2:-../shared}
hub_model=${OWL_DEMO_MODEL:-Qwen/Qwen3-0.6B-GGUF}
question="How many times does the letter r occur in the word strawberry?"

echo "demo: owl chat $hub_model (pulled into the Hugging Face cache on first use)" >&2
if echo "$question" | "$owl" chat "$hub_model" --budget 512; then
  exit 0
fi
model="$shared/models/stories260K/stories260K-f32.gguf"
[ -f "$model" ] || { echo "demo: $model not found; ../shared must sit beside the repository" >&2; exit 1; }
echo "demo: the hub model did not run (see above); running the local model $model instead" >&2
"$owl" run "$model" "Once upon a time" -n 64 --temp 0
