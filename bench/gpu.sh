#!/usr/bin/env bash
# Benchmark the real Gemma 4 12B architecture (random weights) on a CUDA machine without internet.
#
#   bash bench/gpu.sh --out bench/results/gpu_12b
#
# Needs: this checkout; Python with the machine's CUDA build of torch; the parts made by
# bench/fetch_wheels.sh in bench/wheel-parts/ (or --parts DIR); the model's config.json at
# bench/configs/gemma-4-12B-it.config.json (or --model-config FILE; bench/README.md says why).
#
#   1. checks the parts against SHA256SUMS and reassembles the wheel folder (a temporary one);
#   2. makes a venv with --system-site-packages (the machine's torch is used, never replaced)
#      and installs every wheel of the bundle with pip --no-index --find-links; then, from the
#      bundle's vllm/ folder (vLLM's pins conflict with Axolotl's), a second such venv for vLLM;
#   3. stops with exit status 2 and one line if torch sees no CUDA device;
#   4. runs the harness (bench/run.py; the checkout's code, ahead of the bundle's copy of the project,
#      so the report's git revision is this checkout's) in three parts, each in its own
#      process under its own time limit, 8 minutes in all: training throughput, MFU and peak
#      memory of every training variant; scoring throughput with transformers; scoring with vLLM
#      (its OpenAI-compatible server, from the vLLM venv of step 2, or the one RECIPEKIT_VLLM_PYTHON
#      names if set; a bundle made with `fetch_wheels.sh --without vllm` has none: then c_vllm is
#      reported as skipped, "no vLLM environment");
#   5. combines them into one report, DIR/report.json and DIR/report.md, with DIR/manifest.json;
#      each part's own report and log stay in DIR/parts/. A part that fails or runs out of time is
#      listed there as not measured; the script then exits 1.
#
# Options:
#   --out DIR             output folder (required)
#   --parts DIR           the parts and SHA256SUMS (default bench/wheel-parts/)
#   --model-config FILE   config.json of google/gemma-4-12B-it (checked against its published shape)
#   --venv DIR            the venv to make (default bench/gpu-venv/, git-ignored; made anew)
#   --vllm-venv DIR       the vLLM venv to make (default bench/gpu-vllm-venv/, git-ignored; made anew)
#   --skip-install        reuse the venvs of an earlier run (steps 1-2 skipped)
#   --print-bench-commands  print the harness commands of steps 4-5 and exit
# Environment: PYTHON, the interpreter whose torch is used (default python3).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=""
PARTS=$REPO/bench/wheel-parts
MODEL_CONFIG=$REPO/bench/configs/gemma-4-12B-it.config.json
VENV=$REPO/bench/gpu-venv
VLLM_VENV=$REPO/bench/gpu-vllm-venv
PYTHON=${PYTHON:-python3}
SKIP_INSTALL=0
PRINT_ONLY=0
ARCHITECTURE=gemma-4-12B-it

# 8 minutes for the suites, split into one limit per part. The 12B is built afresh for each
# training variant and once per scoring part; vLLM also saves and reloads it before it generates.
BUDGET_S=480
PART_NAMES=(train generate_transformers generate_vllm)
declare -A LIMIT_S=([train]=180 [generate_transformers]=120 [generate_vllm]=180)
SCORING=(--suite generate --rows 32 --new-tokens 128 --batch-size 32 --loop-rows 2)

die() { echo "gpu.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --out) OUT=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --model-config) MODEL_CONFIG=$2; shift 2 ;;
    --venv) VENV=$2; shift 2 ;;
    --vllm-venv) VLLM_VENV=$2; shift 2 ;;
    --skip-install) SKIP_INSTALL=1; shift ;;
    --print-bench-commands) PRINT_ONLY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -n $OUT ]] || die "--out DIR is required"
total=0
for name in "${PART_NAMES[@]}"; do total=$((total + LIMIT_S[$name])); done
((total <= BUDGET_S)) || die "the part limits add up to ${total} s, over the ${BUDGET_S} s budget"

# The harness arguments of one part, in ARGS.
part_args() {
  case $1 in
    train) ARGS=(--suite train --sequence-len 4096 --warmup 2 --steps 6) ;;
    generate_transformers) ARGS=("${SCORING[@]}" --variants "a_loop,b_batched_unsorted,b_batched_sorted,b_batched_sorted_static") ;;
    generate_vllm) ARGS=("${SCORING[@]}" --variants c_vllm) ;;
  esac
  ARGS+=(--model-config "$MODEL_CONFIG" --architecture "$ARCHITECTURE" --seed 0 --out "$OUT/parts/$1")
}
# The vLLM part's interpreter: the user's RECIPEKIT_VLLM_PYTHON, else the bundle's vLLM venv if made
# (else the harness looks for .venv-vllm and reports c_vllm skipped without one).
choose_vllm_python() {
  if [[ -z ${RECIPEKIT_VLLM_PYTHON:-} && -x $VLLM_VENV/bin/python ]]; then
    export RECIPEKIT_VLLM_PYTHON=$VLLM_VENV/bin/python
  fi
}
COMBINE=(--combine)
for name in "${PART_NAMES[@]}"; do COMBINE+=("$OUT/parts/$name.json"); done
COMBINE+=(--out "$OUT/report")

if [[ $PRINT_ONLY == 1 ]]; then
  choose_vllm_python
  for name in "${PART_NAMES[@]}"; do
    part_args "$name"
    [[ $name != generate_vllm || -z ${RECIPEKIT_VLLM_PYTHON:-} ]] || printf 'RECIPEKIT_VLLM_PYTHON=%q ' "$RECIPEKIT_VLLM_PYTHON"
    printf 'timeout %s python bench/run.py' "${LIMIT_S[$name]}"; printf ' %q' "${ARGS[@]}"; echo
  done
  printf 'python bench/run.py'; printf ' %q' "${COMBINE[@]}"; echo
  exit 0
fi

[[ -f $MODEL_CONFIG ]] || die "no model config at $MODEL_CONFIG: copy google/gemma-4-12B-it's config.json" \
  "there or pass --model-config FILE (bench/README.md, 'The model configuration')"

if [[ $SKIP_INSTALL == 0 ]]; then
  [[ -f $PARTS/SHA256SUMS ]] || die "no $PARTS/SHA256SUMS: copy the parts made by bench/fetch_wheels.sh there"
  (cd "$PARTS" && sha256sum --quiet --strict -c SHA256SUMS) ||
    die "the parts in $PARTS do not match SHA256SUMS (one is missing or damaged): copy them again"
  WHEELS=$(mktemp -d)
  trap 'rm -rf "$WHEELS"' EXIT
  # Reassemble in the order the parts were listed when packed.
  (cd "$PARTS" && awk '{ sub(/^\*/, "", $2); print $2 }' SHA256SUMS | xargs cat) | tar -xf - -C "$WHEELS"
  compgen -G "$WHEELS/*.whl" > /dev/null || die "the parts in $PARTS hold no wheel"
  rm -rf "$VENV"
  "$PYTHON" -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" "$WHEELS"/*.whl ||
    die "pip could not install the bundle into $VENV (offline, from the parts): see pip's message above"
  echo "gpu.sh: installed $(find "$WHEELS" -maxdepth 1 -name '*.whl' | wc -l) wheels into $VENV"
  rm -rf "$VLLM_VENV"
  if compgen -G "$WHEELS/vllm/*.whl" > /dev/null; then
    "$PYTHON" -m venv --system-site-packages "$VLLM_VENV"
    "$VLLM_VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS/vllm" "$WHEELS/vllm"/*.whl ||
      die "pip could not install the bundle's vllm/ into $VLLM_VENV (offline, from the parts): see pip's message above"
    echo "gpu.sh: installed $(find "$WHEELS/vllm" -name '*.whl' | wc -l) wheels into $VLLM_VENV"
  else
    echo "gpu.sh: the bundle has no vllm/ folder: c_vllm needs RECIPEKIT_VLLM_PYTHON or .venv-vllm"
  fi
fi
[[ -x $VENV/bin/python ]] || die "no venv at $VENV: run once without --skip-install"
choose_vllm_python

"$VENV/bin/python" - <<'PY' || exit 2
import sys

try:
    import torch
except ImportError as err:
    sys.exit(f"gpu.sh: torch does not import ({err}): install the machine's CUDA build of torch for {sys.base_prefix}")
if not torch.cuda.is_available():
    sys.exit(f"gpu.sh: CUDA is not available (torch {torch.__version__}, CUDA build {torch.version.cuda}, "
             "no device visible): run this on a machine with an NVIDIA GPU and its driver")
print(f"gpu.sh: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
PY

# No hub, no telemetry: the machine has no internet and the model is built from its config.
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH} HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
rm -rf "$OUT/parts"
mkdir -p "$OUT/parts"
[[ $SKIP_INSTALL == 1 ]] || cp "$PARTS/SHA256SUMS" "$OUT/parts/wheel-parts.SHA256SUMS"
"$VENV/bin/python" -m pip freeze --all > "$OUT/parts/pip-freeze.txt"
if [[ -n ${RECIPEKIT_VLLM_PYTHON:-} && -x $RECIPEKIT_VLLM_PYTHON ]]; then
  env -u PYTHONPATH "$RECIPEKIT_VLLM_PYTHON" -m pip freeze --all > "$OUT/parts/pip-freeze-vllm.txt" || rm "$OUT/parts/pip-freeze-vllm.txt"
fi
failed=()
for name in "${PART_NAMES[@]}"; do
  part_args "$name"
  echo "gpu.sh: $name (at most ${LIMIT_S[$name]} s)"
  status=0
  timeout --kill-after=15 "${LIMIT_S[$name]}" "$VENV/bin/python" "$REPO/bench/run.py" "${ARGS[@]}" \
    > "$OUT/parts/$name.log" 2>&1 || status=$?
  if ((status == 124 || status == 137)); then
    echo "gpu.sh: $name stopped at its ${LIMIT_S[$name]} s limit" >> "$OUT/parts/$name.log"
  elif ((status != 0)); then
    echo "gpu.sh: $name exited with status $status" >> "$OUT/parts/$name.log"
  fi
  ((status == 0)) || failed+=("$name")
  tail -n 1 "$OUT/parts/$name.log"
done
"$VENV/bin/python" "$REPO/bench/run.py" "${COMBINE[@]}" > "$OUT/combine.log" 2>&1 ||
  die "could not combine the parts: $(tail -n 1 "$OUT/combine.log")"
echo "gpu.sh: wrote $OUT/report.json, $OUT/report.md and $OUT/manifest.json"
if ((${#failed[@]})); then
  echo "gpu.sh: no report from ${failed[*]} (see $OUT/report.md, 'Not measured')" >&2
  exit 1
fi
