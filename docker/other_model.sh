#!/usr/bin/env bash
# Another model folder through the image, as Grand-Challenge runs a separately uploaded model:
# mounted read-only at /opt/ml/model, under the platform's flags, on two small phantoms the model
# never saw (2023 layout). It must exit 0, say it used /opt/ml/model, and write each label map on
# its CT's grid (size, spacing, origin, direction, uint8, ids 0..30).
#   docker/other_model.sh IMAGE MODEL_DIR   (PYTHON: a venv with the tools' deps)
# The container tier runs it with a 2.5D model (python -m training.plan --network fcn2p5d).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="$1"; MODEL="$(cd "$2" && pwd)"
PYTHON="${PYTHON:-.venv/bin/python}"
source docker/platform_flags.sh
W=$(mktemp -d /tmp/hanseg-model.XXXXXX)
trap 'rm -rf "$W" 2>/dev/null || docker run --rm -v "$W:/w" --entrypoint sh "$IMAGE" -c "rm -rf /w/*"; rm -rf "$W" 2>/dev/null || true' EXIT

"$PYTHON" -m phantoms --out "$W/case" --layout gc --size small --cases 2 --seed 9200 | sed 's/^/[other-model] /'
mkdir -p "$W/output"; chmod -R a+rwX "$W"
echo "[other-model] docker run ${PLATFORM_FLAGS[*]} -v $MODEL:/opt/ml/model:ro $IMAGE"
code=0
docker run "${PLATFORM_FLAGS[@]}" -v "$W/case/input:/input:ro" -v "$W/output:/output" -v "$MODEL:/opt/ml/model:ro" \
    "$IMAGE" >"$W/log" 2>&1 || code=$?
grep -E "model |inference:|segmented in" "$W/log" | sed 's/^/[other-model]   /' || true
if [ "$code" != 0 ]; then
    tail -5 "$W/log" | sed 's/^/[other-model]   /' >&2; echo "[other-model] FAIL: exit $code" >&2; exit 1
fi
grep -q "using the uploaded model in /opt/ml/model" "$W/log" || { echo "[other-model] FAIL: /opt/ml/model not used" >&2; exit 1; }
"$PYTHON" - "$W/case/input/images/ct" "$W/output/images/head_neck_oar" <<'PY'
import sys
from pathlib import Path
import numpy as np
import SimpleITK as sitk
cts, segs = sorted(Path(sys.argv[1]).glob("*_CT.mha")), Path(sys.argv[2])
failed = []
for ct_path in cts:
    case = ct_path.name.removesuffix("_CT.mha")
    ct, seg = sitk.ReadImage(str(ct_path)), sitk.ReadImage(str(segs / f"{case}_seg.mha"))
    same = (seg.GetSize() == ct.GetSize() and seg.GetSpacing() == ct.GetSpacing() and seg.GetOrigin() == ct.GetOrigin()
            and seg.GetDirection() == ct.GetDirection() and seg.GetPixelID() == sitk.sitkUInt8)
    values = np.unique(sitk.GetArrayViewFromImage(seg))
    if not same or values.max() > 30:
        failed.append(f"{case}: not on the CT grid or labels {values.tolist()}")
    print(f"[other-model] {case}: label map on the CT grid {ct.GetSize()}, {len(values) - 1} structures")
if len(cts) != 2 or failed:
    sys.exit("[other-model] FAIL: " + "; ".join(failed or [f"{len(cts)} cases"]))
print("[other-model] exit 0, both label maps on their CT grids")
PY
