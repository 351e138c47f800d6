#!/usr/bin/env bash
# A full-size case through the image under the platform's flags (4 GB of memory, no swap, no
# network, read-only input): a phantom never used in training with a 1024×1024×~200 CT at
# ~0.56×0.56×2 mm and the MR on its own grid, as big as HaN-Seg CTs get. It must finish with
# exit 0, write the label map on the CT's grid, and score at least MIN_DICE (default 0.6)
# mean Dice against the phantom's truth, so a run that "finishes" with an empty map fails.
#   docker/full_size.sh [IMAGE]   (default hanseg-oar:latest; PYTHON: a venv with hanseg's deps)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${1:-hanseg-oar:latest}"
PYTHON="${PYTHON:-.venv/bin/python}"
MIN_DICE="${MIN_DICE:-0.6}"
SEED="${SEED:-5151}"
source docker/platform_flags.sh
W=$(mktemp -d /tmp/hanseg-full.XXXXXX)
trap 'rm -rf "$W" 2>/dev/null || docker run --rm -v "$W:/w" --entrypoint sh "$IMAGE" -c "rm -rf /w/*"; rm -rf "$W" 2>/dev/null || true' EXIT

"$PYTHON" -m phantoms --out "$W/case" --layout gc --size full --seed "$SEED"
mkdir -p "$W/output"; chmod -R a+rwX "$W"
echo "[full-size] docker run ${PLATFORM_FLAGS[*]} -v case:/input:ro $IMAGE"
start=$SECONDS
code=0
docker run "${PLATFORM_FLAGS[@]}" -v "$W/case/input:/input:ro" -v "$W/output:/output" "$IMAGE" >"$W/log" 2>&1 || code=$?
seconds=$((SECONDS - start))
grep -E "crop box|inference:|segmented in|peak memory" "$W/log" | sed 's/^/[full-size]   /' || true
if [ "$code" != 0 ]; then
    tail -5 "$W/log" | sed 's/^/[full-size]   /' >&2
    echo "[full-size] FAIL: exit $code after $seconds s (137: killed at the 4 GB limit)" >&2; exit 1
fi
"$PYTHON" -m evaluation.metrics --pred "$W/output/images/head_neck_oar" --gt "$W/case/ground_truth" --out "$W/eval" >/dev/null 2>&1
"$PYTHON" - "$W/eval/summary.json" "$MIN_DICE" "$seconds" <<'PY'
import json, sys
summary, floor, seconds = json.load(open(sys.argv[1])), float(sys.argv[2]), sys.argv[3]
dice, hd95 = summary["mean_dice"] or 0.0, summary["mean_hd95"]
print(f"[full-size] exit 0 in {seconds} s; mean Dice {dice:.3f} against the phantom's truth, mean HD95 {hd95:.2f} mm")
if dice < floor:
    sys.exit(f"[full-size] FAIL: mean Dice {dice:.3f} < {floor}")
PY
