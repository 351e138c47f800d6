#!/usr/bin/env bash
# Run the image on test/ exactly as Grand-Challenge's template test does, then compare the
# outputs with the expected ones. Exit 0 only if every check passes.
#   ./test.sh [IMAGE]      (default hanseg-oar:latest; build it first with ./build.sh)
# Runs: 1) HaN-Seg 2023 layout: test/ mounted read-only as /input → results.json and the
#       label map, compared with test/expected_output.json and test/expected_output/ (per-OAR
#       Dice >= 0.98, so bfloat16/float16 and CPU/GPU differences at OAR edges pass; a wrong label or grid does not);
#       2) socket layout: the same images behind an inputs.json, with model/ mounted at
#       /opt/ml/model as Grand-Challenge does for a separately uploaded model, and (stricter
#       than the platform) a read-only root file system: the image may write only to /output
#       and /tmp.
set -euo pipefail
cd "$(dirname "$0")"
IMAGE="${1:-hanseg-oar:latest}"
MIN_DICE="${MIN_DICE:-0.98}"
EXPECTED_MAP=test/expected_output/images/head_neck_oar/case_01_seg.mha
source docker/platform_flags.sh
FLAGS=("${PLATFORM_FLAGS[@]}")
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    FLAGS+=(--gpus all); echo "[test] GPU found: running with --gpus all"
else
    echo "[test] no GPU: running on the CPU"
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 || { echo "[test] no image $IMAGE: run ./build.sh first" >&2; exit 1; }
OUT=$(mktemp -d /tmp/hanseg-test.XXXXXX)
cleanup() {  # files written by the container's user may need the container to remove them
    rm -rf "$OUT" 2>/dev/null || docker run --rm -v "$OUT:/scratch" --entrypoint rm "$IMAGE" -rf /scratch/run2023 /scratch/sockets
    rm -rf "$OUT" 2>/dev/null || echo "[test] left $OUT behind"
}
fail() { echo "[test] FAIL: $*" >&2; echo "[test] outputs kept in $OUT" >&2; trap - EXIT; exit 1; }
trap cleanup EXIT
mkdir -p "$OUT/run2023" "$OUT/sockets/output"
chmod -R a+rwx "$OUT"   # the container runs as its own non-root user

compare() {  # label map, expected map, [results.json, expected results.json]
    local args=(--label-map "/out/$1" --expected "/repo/$2" --min-dice "$MIN_DICE")
    [ $# -ge 4 ] && args+=(--results "/out/$3" --expected-results "/repo/$4")
    docker run --rm --network=none -v "$OUT:/out:ro" -v "$PWD/test:/repo/test:ro" \
        --entrypoint python3 "$IMAGE" -m hanseg.compare "${args[@]}"
}

echo "[test] 1/2 HaN-Seg 2023 layout: docker run ${FLAGS[*]} -v test:/input:ro $IMAGE"
start=$SECONDS
docker run "${FLAGS[@]}" -v "$PWD/test:/input:ro" -v "$OUT/run2023:/output" "$IMAGE" \
    || fail "the container exited with $? on test/"
echo "[test] finished in $((SECONDS - start)) s"
compare run2023/images/head_neck_oar/case_01_seg.mha "$EXPECTED_MAP" run2023/results.json test/expected_output.json \
    || fail "2023-layout outputs differ from the expected ones"

echo "[test] 2/2 socket layout (inputs.json), model/ at /opt/ml/model, --read-only root file system"
SIN="$OUT/sockets/input"
mkdir -p "$SIN/images/head-neck-ct" "$SIN/images/head-neck-t1-mri"
cp test/images/ct/*.mha "$SIN/images/head-neck-ct/"
cp test/images/t1-mri/*.mha "$SIN/images/head-neck-t1-mri/"
cat > "$SIN/inputs.json" <<'JSON'
[{"socket": {"slug": "head-neck-ct", "kind": "Image", "relative_path": "images/head-neck-ct"}, "image": {"name": "case_01_CT.mha"}},
 {"socket": {"slug": "head-neck-t1-mri", "kind": "Image", "relative_path": "images/head-neck-t1-mri"}, "image": {"name": "case_01_T1.mha"}}]
JSON
chmod -R a+rX "$SIN"
docker run "${FLAGS[@]}" --read-only --tmpfs /tmp -v "$SIN:/input:ro" -v "$OUT/sockets/output:/output" -v "$PWD/model:/opt/ml/model:ro" \
    "$IMAGE" 2>&1 | tee "$OUT/sockets/log.txt" || fail "the container exited non-zero on the socket layout"
grep -q "using the uploaded model in /opt/ml/model" "$OUT/sockets/log.txt" || fail "the model in /opt/ml/model was not used"
compare sockets/output/images/head_neck_oar/output.mha "$EXPECTED_MAP" || fail "socket-layout output differs"
echo "[test] PASS: both layouts match the expected outputs (per-OAR Dice >= $MIN_DICE)"
