#!/usr/bin/env bash
# Download the pinned GPU stack as wheels for an offline CUDA machine, then pack them into parts.
#
# Run on a machine WITH access to the package index, from anywhere in the repository:
#
#   bash bench/fetch_wheels.sh                     # Linux x86_64 (glibc 2.31+), CPython 3.11 (requires-python)
#   bash bench/fetch_wheels.sh --platform manylinux_2_28_x86_64 --without vllm   # glibc 2.28: no vLLM
#   bash bench/fetch_wheels.sh --python-version 3.12 --platform manylinux_2_35_x86_64
#   bash bench/fetch_wheels.sh --source-wheels ~/built   # + flash-attn/deepspeed wheels built elsewhere
#   bash bench/fetch_wheels.sh --dry-run           # print the pip commands, run nothing
#
# What it fetches, as two sets resolved apart (vLLM's pins conflict with Axolotl's; bench/gpu.sh makes
# one venv of each): the training set, every package of requirements.txt and requirements-gpu.txt,
# into the wheel folder; the vLLM set, every package of requirements-vllm-cuda.txt, into its vllm/
# subfolder. The pins are read from those files; their dependencies are resolved for the target
# machine, except torch and the CUDA runtime packages torch itself requires (nvidia-*, triton,
# cuda-*): the GPU machine already has those, matching its driver, and both venvs use its torch, so
# both files must pin the same torch. Plus the project's own wheel (`pip wheel . --no-deps`).
#   1. pip install --dry-run --report, once per set: resolve it for the target (binary wheels only),
#      torch held at its pin from requirements.txt so the rest is resolved against it. A package
#      the index has only as source (rouge-score, deepspeed: pure Python) is built into a wheel
#      here with `pip wheel --no-deps` and the resolution tried again;
#   2. pip download --no-deps of every resolved wheel but torch's CUDA stack (bench/wheel_plan.py);
#   3. pip wheel . --no-deps (the project, into the training folder);
#   4. pack the wheel folder (vllm/ with it: one SHA256SUMS) into numbered tar parts of at most
#      --part-size bytes and SHA256SUMS.
#
# CUDA_BUILT packages (flash-attn, deepspeed-kernels) are source only on the index too, and compile
# against CUDA and torch. Build their wheels on a CUDA machine with the target's torch
# (`pip wheel --no-deps --no-build-isolation flash-attn==2.8.3`) and pass the folder with
# --source-wheels: they are then resolved and bundled like the rest. Without it they are left out
# and listed in NOT_INCLUDED.txt; the benchmark then reports the variants that need them as
# skipped ("not installed: flash_attn").
#
# Moving the parts (each under 60 MB by default) and reassembling them:
#
#   copy bench/wheel-parts/ (wheels.tar.part-000, -001, ..., SHA256SUMS) to the GPU machine's
#   checkout, same path; then `bash bench/gpu.sh --out DIR` verifies and reassembles them itself.
#   By hand: cd bench/wheel-parts && sha256sum -c SHA256SUMS \
#            && mkdir -p ../wheels && cat wheels.tar.part-* | tar -xf - -C ../wheels
#
# Options:
#   --dest DIR            wheel folder (default bench/wheels/, git-ignored; emptied first)
#   --parts DIR           where the parts and SHA256SUMS go (default bench/wheel-parts/, git-ignored)
#   --python-version X.Y  target interpreter (default 3.11)
#   --platform TAG        target platform tag (default manylinux_2_31_x86_64, glibc 2.31: the oldest the
#                         vLLM set has wheels for (llguidance); older manylinux tags match too)
#   --part-size SIZE      split's -b size (default 60MB = 60,000,000 bytes; also PART_SIZE)
#   --source-wheels DIR   prebuilt wheels of the CUDA_BUILT packages
#   --without NAME        leave a package of the requirement files out (repeatable), e.g. one whose
#                         pins cannot be resolved together with the rest; listed in NOT_INCLUDED.txt.
#                         `--without vllm` leaves the whole vLLM set out (gpu.sh then makes no vLLM venv)
#   --plan-only           run step 1 and print what step 2 would download (each set), then exit
#   --pack-only           skip 1-3: pack an existing --dest folder
#   --dry-run             print the commands of 1-4 and exit
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$REPO/bench/wheels
PARTS=$REPO/bench/wheel-parts
PYVER=3.11
PLATFORM=manylinux_2_31_x86_64
PART_SIZE=${PART_SIZE:-60MB}
SOURCE_WHEELS=""
WITHOUT=()
PACK_ONLY=0
PLAN_ONLY=0
DRY_RUN=0
read -ra PIP <<< "${PIP:-python3 -m pip}"  # the pip that fetches (any Python with pip)
CUDA_BUILT=(flash-attn deepspeed-kernels)
REQUIREMENTS=("$REPO/requirements.txt" "$REPO/requirements-gpu.txt")
VLLM_REQUIREMENTS=$REPO/requirements-vllm-cuda.txt

die() { echo "fetch_wheels.sh: $*" >&2; exit 2; }

while [[ $# -gt 0 ]]; do
  case $1 in
    --dest) DEST=$2; shift 2 ;;
    --parts) PARTS=$2; shift 2 ;;
    --python-version) PYVER=$2; shift 2 ;;
    --platform) PLATFORM=$2; shift 2 ;;
    --part-size) PART_SIZE=$2; shift 2 ;;
    --source-wheels) SOURCE_WHEELS=$2; shift 2 ;;
    --without) WITHOUT+=("${2,,}"); shift 2 ;;
    --pack-only) PACK_ONLY=1; shift ;;
    --plan-only) PLAN_ONLY=1; shift ;;
    --dry-run) DRY_RUN=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ $PYVER =~ ^3\.[0-9]+$ ]] || die "--python-version must look like 3.11, not '$PYVER'"

# name==version lines of the requirements files given, comments and blanks dropped, names lower-cased.
pins() {
  sed -e 's/#.*//' -e 's/[[:space:]]//g' "$@" | awk 'NF' |
    awk '{ split($0, p, /[=<>!~;\[]/); printf "%s%s\n", tolower(p[1]), substr($0, length(p[1]) + 1) }'
}
pin_name() { local n=${1%%[=<>!~;[]*}; echo "${n,,}"; }
is_in() { local item=$1 s; shift; for s in "$@"; do [[ $item == "$s" ]] && return 0; done; return 1; }

SKIPPED=()  # "pin: why" of each package left out
# The pins of one set's files ($2...) into WANTED_$1, its torch pin into TORCH_$1 (not wanted: held).
select_pins() {
  local -n wanted=WANTED_$1 torch=TORCH_$1
  local pin name
  shift
  wanted=() torch=""
  while read -r pin; do
    name=$(pin_name "$pin")
    if [[ $name == torch ]]; then torch=$pin
    elif is_in "$name" "${WITHOUT[@]}"; then SKIPPED+=("$pin: left out with --without")
    elif is_in "$name" "${CUDA_BUILT[@]}" && [[ -z $SOURCE_WHEELS ]]; then
      SKIPPED+=("$pin: compiled against CUDA, build it there (see --source-wheels)")
    else wanted+=("$pin")
    fi
  done < <(pins "$@")
}
select_pins train "${REQUIREMENTS[@]}"
TORCH_PIN=$TORCH_train
[[ -n $TORCH_PIN ]] || die "requirements.txt pins no torch: nothing to hold the resolution to"
SETS=(train)
declare -A SET_DEST=([train]=$DEST [vllm]=$DEST/vllm)
if is_in vllm "${WITHOUT[@]}"; then
  SKIPPED+=("vllm: the vLLM set (${VLLM_REQUIREMENTS#"$REPO"/}), left out with --without")
else
  [[ -f $VLLM_REQUIREMENTS ]] || die "no $VLLM_REQUIREMENTS for the vLLM set (or leave it out: --without vllm)"
  select_pins vllm "$VLLM_REQUIREMENTS"
  [[ -z $TORCH_vllm || $TORCH_vllm == "$TORCH_PIN" ]] || die "${VLLM_REQUIREMENTS#"$REPO"/} pins $TORCH_vllm," \
    "requirements.txt $TORCH_PIN: both venvs use the GPU machine's one torch (or --without vllm)"
  SETS+=(vllm)
fi

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
BUILT=$WORK/built  # wheels built here from source-only packages (step 1)
# pip takes --platform literally: a manylinux_2_31 machine also runs manylinux_2_17 (manylinux2014)
# wheels, so every older tag is listed; linux_x86_64 is the tag of wheels built from source.
PLATFORMS=(--platform "$PLATFORM")
if [[ $PLATFORM =~ ^manylinux_2_([0-9]+)_(.+)$ ]]; then
  for ((glibc = BASH_REMATCH[1] - 1; glibc >= 5; glibc--)); do
    PLATFORMS+=(--platform "manylinux_2_${glibc}_${BASH_REMATCH[2]}")
  done
  for legacy in manylinux2014 manylinux2010 manylinux1; do PLATFORMS+=(--platform "${legacy}_${BASH_REMATCH[2]}"); done
fi
TARGET=(--only-binary=:all: "${PLATFORMS[@]}" --platform linux_x86_64 --python-version "$PYVER"
        --implementation cp --abi "cp${PYVER/./}" --find-links "$BUILT")
[[ -z $SOURCE_WHEELS ]] || TARGET+=(--find-links "$SOURCE_WHEELS")
printf '%s\n' "$TORCH_PIN" > "$WORK/torch-constraint.txt"
# RESOLVE and DOWNLOAD of one set.
set_commands() {
  local -n wanted=WANTED_$1
  RESOLVE=("${PIP[@]}" install --dry-run --quiet --ignore-installed --report "$WORK/plan-$1.json" "${TARGET[@]}"
           -c "$WORK/torch-constraint.txt" "${wanted[@]}")
  DOWNLOAD=("${PIP[@]}" download --no-deps --quiet --dest "${SET_DEST[$1]}" "${TARGET[@]}")
}
declare -A SET_TITLE=([train]="training set (${REQUIREMENTS[*]#"$REPO"/})"
                      [vllm]="vLLM set (${VLLM_REQUIREMENTS#"$REPO"/}), resolved apart")
BUILD=("${PIP[@]}" wheel --no-deps --quiet --wheel-dir "$BUILT")
PROJECT=("${PIP[@]}" wheel --no-deps --quiet --wheel-dir "$DEST" "$REPO")

pack() {
  compgen -G "$DEST/*.whl" > /dev/null || die "$DEST holds no .whl file to pack"
  mkdir -p "$PARTS"
  rm -f "$PARTS"/wheels.tar.part-* "$PARTS/SHA256SUMS"
  tar -C "$DEST" -cf - . | split -b "$PART_SIZE" -d -a 3 - "$PARTS/wheels.tar.part-"
  (cd "$PARTS" && sha256sum wheels.tar.part-* > SHA256SUMS.tmp && mv SHA256SUMS.tmp SHA256SUMS)
  local parts=("$PARTS"/wheels.tar.part-*)
  echo "packed $(find "$DEST" -name '*.whl' | wc -l) wheels from $DEST ($(find "$DEST/vllm" -name '*.whl' \
       2> /dev/null | wc -l) of them in vllm/) into ${#parts[@]} parts of at most $PART_SIZE in $PARTS (+ SHA256SUMS)"
}

# Step 1, building a wheel for each package the index has only as source, until the set resolves.
resolve() {
  mkdir -p "$BUILT"
  : > "$WORK/built.txt"
  while ! "${RESOLVE[@]}" 2> "$WORK/resolve.err"; do
    spec=$(sed -n 's/.*No matching distribution found for \([^ ]*\).*/\1/p' "$WORK/resolve.err" | tail -n 1)
    if [[ -z $spec ]]; then
      cat "$WORK/resolve.err" >&2
      die "pip could not resolve the set for CPython $PYVER on $PLATFORM (its message is above)"
    elif grep -qxF -- "$spec" "$WORK/built.txt"; then
      cat "$WORK/resolve.err" >&2
      die "$spec: the wheel built from its source here does not fit CPython $PYVER on $PLATFORM:" \
          "build it on such a machine and pass its folder with --source-wheels"
    fi
    echo "fetch_wheels.sh: $spec: no wheel on the index, building one from its source" >&2
    "${BUILD[@]}" "$spec"
    echo "$spec" >> "$WORK/built.txt"
  done
}

show() { printf '%q ' "$@"; echo; }  # a command as the shell would take it back
if [[ $DRY_RUN == 1 ]]; then
  echo "# target: CPython $PYVER, $PLATFORM; torch held at $TORCH_PIN and left out"
  for set in "${SETS[@]}"; do
    set_commands "$set"
    echo "# the ${SET_TITLE[$set]}, into ${SET_DEST[$set]}"
    show "${RESOLVE[@]}"
    echo "# (a package without a wheel on the index: $(show "${BUILD[@]}")SPEC, then the above again)"
    echo "$(show "${DOWNLOAD[@]}")<each wheel of the plan but torch, nvidia-*, triton, cuda-* that torch requires>"
  done
  show "${PROJECT[@]}"
  echo "tar -C $DEST -cf - . | split -b $PART_SIZE -d -a 3 - $PARTS/wheels.tar.part-"
  for skipped in "${SKIPPED[@]}"; do echo "# not included: $skipped"; done
  exit 0
fi

if [[ $PACK_ONLY == 0 ]]; then
  for set in "${SETS[@]}"; do
    set_commands "$set"
    resolve
    python3 "$REPO/bench/wheel_plan.py" "$WORK/plan-$set.json" > "$WORK/download-$set.txt"
    if [[ $PLAN_ONLY == 1 ]]; then
      echo "# the ${SET_TITLE[$set]}: $(wc -l < "$WORK/download-$set.txt") wheels into ${SET_DEST[$set]}"
      cat "$WORK/download-$set.txt"
    fi
  done
  [[ $PLAN_ONLY == 0 ]] || exit 0
  rm -rf "$DEST"
  for set in "${SETS[@]}"; do
    set_commands "$set"
    mkdir -p "${SET_DEST[$set]}"
    xargs -a "$WORK/download-$set.txt" "${DOWNLOAD[@]}"
    cp "$WORK/download-$set.txt" "${SET_DEST[$set]}/BUNDLE.txt"
  done
  "${PROJECT[@]}"
  [[ ${#SKIPPED[@]} == 0 ]] || printf '%s\n' "${SKIPPED[@]}" > "$DEST/NOT_INCLUDED.txt"
fi
pack
