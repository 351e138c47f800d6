#!/usr/bin/env bash
# Build a local CPU base image (Debian bookworm + Python 3.11 + CPU torch) without any
# registry: for CI and for machines that cannot pull pytorch/pytorch. The real base for
# users is a CUDA PyTorch runtime image (see Dockerfile's BASE_IMAGE).
#   docker/build_local_base.sh [TAG]          (default local/hanseg-base:cpu)
# Env: TORCH_SPEC (default torch==2.13.0, fetched with the host's pip, so a local index or
#      wheel folder works), DEBIAN_MIRROR (default: the host's first apt URI), PYTHON (host pip),
#      HANSEG_BASE_CACHE (a folder: the built base is saved there as a tar named by the hash of
#      this script, the two settings above and TAG, and loaded from it next time instead of rebuilt;
#      a changed script or setting builds anew).
set -euo pipefail
TAG="${1:-local/hanseg-base:cpu}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
PY="${PYTHON:-python3}"
MIRROR="${DEBIAN_MIRROR:-$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CACHE="${HANSEG_BASE_CACHE:-}"
if [ -n "$CACHE" ]; then
    KEY=$( (cat "$0"; echo "$TORCH_SPEC $MIRROR $TAG") | sha256sum | cut -c1-16)
    SAVED="$CACHE/hanseg-base-$KEY.tar"
    if [ -f "$SAVED" ] && docker load -q -i "$SAVED" >/dev/null && docker image inspect "$TAG" >/dev/null 2>&1; then
        echo "[base] loaded $TAG from $SAVED (built earlier from the same script and settings)"
        exit 0
    fi
fi
WORK=$(mktemp -d /tmp/hanseg-base.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

echo "[base] debootstrap bookworm (minbase + python3, pip) from $MIRROR"
debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
    bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; exit 1; }
rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
tar -C "$WORK/rootfs" -c . | docker import - local/bookworm-py:latest >/dev/null
rm -rf "$WORK/rootfs"

echo "[base] fetching $TORCH_SPEC and its dependencies with the host's pip (cp311, manylinux)"
mkdir -p "$WORK/ctx/wheels"
"$PY" -m pip download -q --only-binary=:all: --python-version 3.11 --platform manylinux_2_28_x86_64 \
    --implementation cp -d "$WORK/ctx/wheels" "$TORCH_SPEC" numpy
cat >"$WORK/ctx/Dockerfile" <<'DOCKERFILE'
FROM local/bookworm-py:latest
COPY wheels /tmp/wheels
RUN python3 -m pip install --no-cache-dir --no-index --break-system-packages \
        --find-links /tmp/wheels /tmp/wheels/torch-*.whl numpy \
    && rm -rf /tmp/wheels \
    && ln -sf /usr/bin/python3 /usr/local/bin/python
DOCKERFILE
docker build -q -t "$TAG" "$WORK/ctx" >/dev/null
echo "[base] built $TAG: $(docker run --rm "$TAG" python3 -c 'import torch, sys; print("python", sys.version.split()[0], "torch", torch.__version__)')"
if [ -n "$CACHE" ]; then
    mkdir -p "$CACHE"
    docker save -o "$SAVED.part" "$TAG" && mv "$SAVED.part" "$SAVED"
    echo "[base] saved to $SAVED"
fi
