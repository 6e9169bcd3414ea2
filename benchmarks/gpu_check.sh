#!/usr/bin/env bash
# The GPU check: the tiny-model rotation, scoring and RoAd tests on CUDA, then the objective's speed on CUDA
# (float32 and bfloat16; TaRot's folded weights against the paper's hooks) on randomly initialised models of
# SmolLM2's shape and of Qwen2-1.5B's, as ratios within one run. At most about 8 minutes.
#
# The GPU machine reaches no registry and no hub, and at most 64 MiB travel with the working tree: neither
# the embedded model's wheel nor its weights can go. So, first, on a machine with the project installed:
#
#   benchmarks/gpu_check.sh --prepare
#
# copies SmolLM2's config and tokenizer (no weights, about 4 MB) and the wheels the GPU image lacks
# (bayesian-optimization, colorama, gguf; its image has torch, transformers, accelerate, peft, scikit-learn) into
# .gpu_assets/ (ignored by git). Then, on the GPU machine, from the repository root, with .gpu_assets
# carried along:
#
#   benchmarks/gpu_check.sh
#
# It writes benchmarks/results/gpu_tests.txt and gpu_objective_<shape>.json (OUT= to change).
set -euo pipefail
cd "$(dirname "$0")/.."
ASSETS=.gpu_assets
OUT=${OUT:-benchmarks/results}
PY=${PY:-python3}

if [[ ${1:-} == --prepare ]]; then
  rm -rf "$ASSETS" && mkdir -p "$ASSETS/smollm2" "$ASSETS/wheels"
  .venv/bin/python - "$ASSETS/smollm2" <<'EOF'
import shutil, sys
from pathlib import Path
from tarot.models import load_model, _SMOLLM2_CACHE_NAME, cache_dir
load_model("smollm2", device="cpu")  # makes the cache if needed
for file in (cache_dir() / _SMOLLM2_CACHE_NAME).iterdir():
    if not file.name.endswith(".safetensors"):  # config and tokenizer, not the weights
        shutil.copy(file, Path(sys.argv[1]) / file.name)
EOF
  for package in bayesian-optimization gguf colorama; do  # colorama: bayesian-optimization's one other need
    pin=$(.venv/bin/python -m pip freeze | grep -i "^$package==")
    .venv/bin/python -m pip download --quiet --no-deps -d "$ASSETS/wheels" "$pin"
  done
  du -sh "$ASSETS"
  exit 0
fi

[[ -d $ASSETS ]] || { echo "gpu_check.sh: error: no $ASSETS: run benchmarks/gpu_check.sh --prepare first" >&2; exit 2; }
$PY -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null ||
  { echo "gpu_check.sh: error: no CUDA device here" >&2; exit 2; }
$PY -m pip install --quiet --no-deps --no-index --target "$ASSETS/site" "$ASSETS"/wheels/*.whl
export PYTHONPATH=$PWD/$ASSETS/site:$PWD HF_HUB_OFFLINE=1 TAROT_CACHE=$PWD/$ASSETS/cache
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu_device.txt" || true

# 1. the tiny-model tests that exercise the rotation maths, the prefix-packed scoring and RoAd, on CUDA
TAROT_TEST_DEVICE=cuda timeout 240 $PY -m pytest -q -p no:cacheprovider tests/test_rotation.py \
  tests/test_classification.py::test_prefix_cache_equals_plain_forward \
  tests/test_classification.py::test_greedy_continuations_equal_generate \
  tests/test_adapters.py::test_road_on_the_values_is_tarots_per_head_rotation_of_the_head_outputs \
  2>&1 | tail -30 > "$OUT/gpu_tests.txt" || echo "tests failed or timed out: see $OUT/gpu_tests.txt"

# 2. the objective's speed on CUDA, per shape: float32's paper hooks, TaRot and the unedited model, and
# TaRot on a bfloat16 copy, interleaved (every ratio within one run)
for shape in smollm2 qwen2-1.5b; do
  timeout 150 $PY benchmarks/objective_speed.py --randomConfig "$shape" --assets "$ASSETS/smollm2" \
    --device cuda --dtype float32 --alsoDtype bfloat16 --threads 1 --repeats 3 \
    --methods paper,tarot,unedited,unedited_cached > "$OUT/gpu_objective_${shape}.json" ||
    echo "speed $shape failed or timed out"
done
ls -la "$OUT"
