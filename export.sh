#!/usr/bin/env bash
# Write what Grand-Challenge takes: the gzipped image and, for a separate model upload,
# model.tar.gz (extracted to /opt/ml/model in the container, which then overrides the baked
# model/). Outputs go to export/.
#   ./export.sh [IMAGE] [MODEL_DIR]     (defaults hanseg-oar:latest, model)
set -euo pipefail
cd "$(dirname "$0")"
IMAGE="${1:-hanseg-oar:latest}"; MODEL="${2:-model}"
mkdir -p export
[ -f "$MODEL/plans.json" ] || { echo "export.sh: $MODEL/plans.json is missing" >&2; exit 1; }
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "export.sh: no image $IMAGE: run ./build.sh first" >&2; exit 1; }
NAME=$(echo "$IMAGE" | tr '/:' '__')
echo "[export] docker save $IMAGE | gzip → export/$NAME.tar.gz"
docker save "$IMAGE" | gzip -c > "export/$NAME.tar.gz.part"
mv "export/$NAME.tar.gz.part" "export/$NAME.tar.gz"
echo "[export] $MODEL/ → export/model.tar.gz (files at the archive root)"
tar -C "$MODEL" -czf export/model.tar.gz .
ls -l export/ | sed 's/^/[export]   /'
