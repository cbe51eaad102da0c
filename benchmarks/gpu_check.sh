#!/usr/bin/env bash
# The GPU checks, in one short run (under 8 minutes on a current CUDA GPU), from the
# repository root of a checkout whose environment is installed (see the README):
#   bash benchmarks/gpu_check.sh [output.md]
# Measures the paper-size forward (batch 16 and 64, fp32 and bf16), training throughput
# with GAN on, one nnU-Net epoch, eager against torch.compile, and runs the micro
# workflow end to end on the GPU.
# Writes the Markdown to benchmarks/gpu.md (or the path given).
set -euo pipefail
cd "$(dirname "$0")/.."
output="${1:-benchmarks/gpu.md}"
python - <<'PY'
import sys
import torch
if not torch.cuda.is_available():
    sys.exit("gpu_check.sh: no CUDA GPU visible to torch; run it on a GPU machine")
PY
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export NIPYPE_NO_ET=1
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
start=$(date +%s)
measures="$(timeout 300 python -m benchmarks.gpu_benchmark --device cuda)"
timeout 120 python -m benchmarks.compile_benchmark --device cuda --threads 8 \
    --output "$workdir/compile.md" > /dev/null && compiled="$(tail -n +3 "$workdir/compile.md")" \
    || compiled="torch.compile: did not finish within 120 s"
cuda_config="$workdir/cuda.yaml"
cat > "$cuda_config" <<'YAML'
models: { training: { device: cuda } }
baselines: { training: { device: cuda } }
evaluation: { device: cuda }
registration_experiment: { device: cuda }
segmentation: { device: cuda, nnunet: { device: cuda } }
YAML
e2e_start=$(date +%s)
timeout 420 snakemake -s workflow/Snakefile --cores all --configfile config/micro.yaml \
    "$cuda_config" -d "$workdir/run" > "$workdir/e2e.log" 2>&1 && e2e=passed || e2e=failed
e2e_s=$(( $(date +%s) - e2e_start ))
{
    echo "# The GPU path, measured"
    echo
    echo "Written by \`bash benchmarks/gpu_check.sh\` on $(hostname) at $(date -u +%FT%TZ)"
    echo "($(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | head -1))."
    echo
    echo "$measures"
    echo
    echo "$compiled"
    echo
    echo "Micro workflow end to end with every device set to cuda: $e2e in ${e2e_s} s."
    echo "Whole check: $(( $(date +%s) - start )) s."
} > "$output"
cat "$output"
if [ "$e2e" = failed ]; then tail -50 "$workdir/e2e.log"; exit 1; fi
