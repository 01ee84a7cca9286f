#!/usr/bin/env bash
# The benchmark on a GPU, in one call: the 1024-point `small` grid against the sequential
# JAX loop, then the `large` preset against the matmul peak, then the lanes of ResNet-50 at
# 224 (batch 32) per device with and without train.remat; writes OUT/small/benchmark.json,
# OUT/large/benchmark.json and OUT/lanes/lanes.json (and .md), and prints the tables.
#
#   scripts/gpu_benchmark.sh [OUT]          # OUT defaults to benchmark_gpu
#
# It installs requirements.txt with the CUDA wheels of jax (pip install "jax[cuda12]")
# unless GRADLAB_SKIP_INSTALL=1, checks that JAX sees a GPU (exit 2 otherwise: a CPU
# number must not be reported as a GPU one), and gives each preset a time limit
# (GRADLAB_PRESET_TIMEOUT seconds, default 240) so one slow loop cannot eat the rest.
# Every figure of a preset is measured side by side in one process, as on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmark_gpu}"
LIMIT="${GRADLAB_PRESET_TIMEOUT:-240}"
if [[ "${GRADLAB_SKIP_INSTALL:-0}" != "1" ]]; then
  python -m pip install -q -r requirements.txt
  python -m pip install -q "jax[cuda12]" || echo "gpu_benchmark: jax[cuda12] did not install; using the jax present"
fi
python - <<'PY'
import sys
import jax
if jax.default_backend() != "gpu":
  print(f"gpu_benchmark: JAX's default backend is {jax.default_backend()!r}, not a GPU", file=sys.stderr)
  sys.exit(2)
print("gpu_benchmark:", jax.devices()[0].device_kind, "x", jax.device_count())
PY
mkdir -p "$OUT"
status=0
timeout "$LIMIT" python -m experiments.benchmark --preset=small --points=1024 \
  --out="$OUT/small" --loop_budget_s=60 || status=$?
timeout "$LIMIT" python -m experiments.benchmark --preset=large \
  --out="$OUT/large" --loop_budget_s=60 || status=$?
timeout "$LIMIT" python -m experiments.benchmark --preset=lanes --lanes_batch=32 \
  --out="$OUT/lanes" || status=$?
ls -l "$OUT"/*/*.json
exit "$status"
