#!/usr/bin/env bash
# Build the inference image.
#   ./build.sh [--tag TAG] [--base IMAGE] [--wheelhouse] [-- extra docker build args]
#   --tag         image tag (default hanseg-oar:latest)
#   --base        base image with python3 + torch (default: the Dockerfile's CUDA PyTorch image)
#   --wheelhouse  first download the runtime wheels into wheelhouse/ with this machine's pip,
#                 so the build itself needs no network (hospital / offline builds)
#   --python-version  Python of the base, for --wheelhouse (default 3.11)
set -euo pipefail
cd "$(dirname "$0")"
TAG=hanseg-oar:latest; BASE=""; WHEELS=0; PYV=3.11; EXTRA=()
while [ $# -gt 0 ]; do
    case "$1" in
        --tag) TAG="$2"; shift 2 ;;
        --base) BASE="$2"; shift 2 ;;
        --wheelhouse) WHEELS=1; shift ;;
        --python-version) PYV="$2"; shift 2 ;;
        --) shift; EXTRA=("$@"); break ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
[ -f model/plans.json ] || { echo "build.sh: model/plans.json is missing: nothing to bake in" >&2; exit 1; }
if [ "$WHEELS" = 1 ]; then
    # Everything in requirements.txt except torch (the base provides it). --no-deps keeps pip
    # from fetching a CUDA torch as monai's dependency; the offline install fails loudly if
    # a needed wheel is missing.
    echo "[build] downloading runtime wheels for CPython $PYV into wheelhouse/"
    grep -Ev '^\s*(#|$|torch\b)' requirements.txt > wheelhouse/.requirements-notorch.txt
    python3 -m pip download -q --no-deps --only-binary=:all: --implementation cp \
        --python-version "$PYV" --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
        -r wheelhouse/.requirements-notorch.txt -d wheelhouse/
    rm -f wheelhouse/.requirements-notorch.txt
    ls wheelhouse/*.whl | sed 's/^/[build]   /'
fi
ARGS=(-t "$TAG")
[ -n "$BASE" ] && ARGS+=(--build-arg "BASE_IMAGE=$BASE")
echo "[build] docker build ${ARGS[*]} ${EXTRA[*]:-} ."
docker build "${ARGS[@]}" "${EXTRA[@]}" .
echo "[build] built $TAG ($(docker image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.2f GB", $1/1e9}'))"
