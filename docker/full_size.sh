#!/usr/bin/env bash
# Real-size cases through the image under the platform's flags (4 GB of memory, no swap, no
# network, read-only input), in one run of the 2023 layout: two phantoms of the real profile never
# used in training, as large and as messy as the HaN-Seg download gets:
#   case_01  the CT reaching the thorax: 1024×1024×330 (346 M voxels; seed 0, phantoms.TALL_SEED);
#   case_02  an MR stored as unsigned 16-bit with the +32768 offset (seed 11, phantoms.MR_UINT16_SEED);
# both with the MR in world coordinates unrelated to the CT's. It must finish with exit 0, use
# the MR in both cases (no "MR not used" in results.json), write each label map on its CT's grid,
# and score at least MIN_DICE (default 0.6) mean Dice per case against the phantom's truth, so a
# run that "finishes" with an empty map fails.
#   docker/full_size.sh [IMAGE]   (default hanseg-oar:latest; PYTHON: a venv with the tools' deps)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${1:-hanseg-oar:latest}"
PYTHON="${PYTHON:-.venv/bin/python}"
MIN_DICE="${MIN_DICE:-0.6}"
source docker/platform_flags.sh
W=$(mktemp -d /tmp/hanseg-full.XXXXXX)
trap 'rm -rf "$W" 2>/dev/null || docker run --rm -v "$W:/w" --entrypoint sh "$IMAGE" -c "rm -rf /w/*"; rm -rf "$W" 2>/dev/null || true' EXIT

"$PYTHON" -m phantoms --out "$W/case" --layout gc --size full --case-seeds 0 11 --workers 2 | sed 's/^/[full-size] /'
mkdir -p "$W/output"; chmod -R a+rwX "$W"
echo "[full-size] docker run ${PLATFORM_FLAGS[*]} -v case:/input:ro $IMAGE"
start=$SECONDS
code=0
docker run "${PLATFORM_FLAGS[@]}" -v "$W/case/input:/input:ro" -v "$W/output:/output" "$IMAGE" >"$W/log" 2>&1 || code=$?
seconds=$((SECONDS - start))
grep -E "crop box|crop stops|registration:|inference:|segmented in|peak memory|needed" "$W/log" | sed 's/^/[full-size]   /' || true
if [ "$code" != 0 ]; then
    tail -5 "$W/log" | sed 's/^/[full-size]   /' >&2
    echo "[full-size] FAIL: exit $code after $seconds s (137: killed at the 4 GB limit)" >&2; exit 1
fi
"$PYTHON" -m evaluation.metrics --pred "$W/output/images/head_neck_oar" --gt "$W/case/ground_truth" --out "$W/eval" >/dev/null 2>&1
"$PYTHON" - "$W/eval/metrics.csv" "$W/output/results.json" "$MIN_DICE" "$seconds" <<'PY'
import csv, json, sys
from collections import defaultdict
rows, results, floor, seconds = csv.DictReader(open(sys.argv[1])), json.load(open(sys.argv[2])), float(sys.argv[3]), sys.argv[4]
dice = defaultdict(list)
for row in rows:
    dice[row["case"]].append(float(row["dice"]))
failed = [f"{r['inputs'][0]['filename']}: {m}" for r in results for m in r["error_messages"] if "MR not used" in m]
for case, values in sorted(dice.items()):
    mean = sum(values) / len(values)
    print(f"[full-size] {case}: mean Dice {mean:.3f} against the phantom's truth")
    if mean < floor:
        failed.append(f"{case}: mean Dice {mean:.3f} < {floor}")
if len(dice) != 2:
    failed.append(f"{len(dice)} label maps scored, expected 2")
print(f"[full-size] exit 0 in {seconds} s for both cases")
if failed:
    sys.exit("[full-size] FAIL: " + "; ".join(failed))
PY
