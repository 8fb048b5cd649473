#!/usr/bin/env bash
# Wheels of what benchmarks/gpu_check.py needs that the bare GPU machine lacks, into .whl/ (gitignored).
#
# That machine's python3 (3.12, x86-64, a CUDA torch) already holds torch, torchvision, numpy,
# pillow, safetensors, huggingface-hub, transformers, accelerate, tqdm, pyyaml, regex, timm, scipy,
# requests, filelock (/work/.library/device/KINDS.md, 'Python packages already there'); the
# check also imports diffusers (the models' ModelMixin), av (video), open_clip_torch and lpips
# (stage 1 fine-tuning), and their needs missing there: ftfy and wcwidth (diffusers' importlib_metadata
# is for Python < 3.8 only). Versions are requirements.txt's pins (ftfy and wcwidth: the venv's).
#
# The list is complete, checked by hand (docs/inference.md): a fresh venv with only the GPU
# machine's packages (KINDS.md's versions where it gives them, the local CPU torch 2.13.0 standing
# in for its CUDA build), these wheels installed as below into /tmp/site, and
#   PYTHONPATH=/tmp/site:. SCENIMEFY_SHARED=/nonexistent python benchmarks/gpu_check.py --tiny
# passes. On the device machine, before the check (.whl carried):
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#
#   benchmarks/device_wheels.sh            # then carry .whl to the device machine (<= 64 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."

pin() { grep -E "^$1==" requirements.txt | cut -d' ' -f1; }
WHEELS=(
  "$(pin diffusers)"
  "$(pin av)"
  "$(pin open_clip_torch)"
  "$(pin lpips)"
  ftfy==6.3.1
  wcwidth==0.9.5
)
PLATFORMS=()
for n in 17 24 27 28 31 34 35; do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)

rm -rf .whl
mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  "${PLATFORMS[@]}" -d .whl "${WHEELS[@]}"
ls -1 .whl
bytes=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "$(ls .whl/*.whl | wc -l) wheels, $((bytes / 1024 / 1024)) MiB ($bytes bytes) in .whl/"
if [ "$bytes" -gt $((64 * 1024 * 1024)) ]; then
  echo "over the 64 MiB that travels to the device machine" >&2
  exit 1
fi
