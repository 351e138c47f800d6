#!/usr/bin/env bash
# Faulty inputs through the real container (the README's table, rows that need no inference):
# each must end with the right exit code, a clear message, and no label map left behind.
#   docker/faulty_inputs.sh [IMAGE]   (default hanseg-oar:latest)
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE="${1:-hanseg-oar:latest}"
source docker/platform_flags.sh
FLAGS=("${PLATFORM_FLAGS[@]}")
W=$(mktemp -d /tmp/hanseg-faulty.XXXXXX)
trap 'rm -rf "$W" 2>/dev/null || docker run --rm -v "$W:/w" --entrypoint sh "$IMAGE" -c "rm -rf /w/*"; rm -rf "$W" 2>/dev/null || true' EXIT
fails=0

# case NAME EXPECTED_EXIT MESSAGE [extra docker args]: runs $W/NAME/input → $W/NAME/output
case_() {
    local name="$1" want="$2" message="$3"; shift 3
    local dir="$W/$name"; mkdir -p "$dir/output"; chmod -R a+rwX "$dir"
    local got=0
    docker run "${FLAGS[@]}" -v "$dir/input:/input:ro" -v "${OUTPUT_MOUNT:-$dir/output:/output}" "$@" "$IMAGE" \
        >"$dir/log" 2>&1 || got=$?
    local left; left=$(find "$dir/output" -name '*.mha' -o -name '*.tmp*' | wc -l)
    if [ "$got" = "$want" ] && grep -qF -- "$message" "$dir/log" && [ "$left" = 0 ]; then
        echo "[faulty] ok    $name: exit $got, \"$message\""
    else
        echo "[faulty] FAIL  $name: exit $got (want $want), message found: $(grep -cF -- "$message" "$dir/log"), files left: $left" >&2
        tail -5 "$dir/log" | sed 's/^/[faulty]       /' >&2
        fails=$((fails + 1))
    fi
}
mk() { mkdir -p "$W/$1/input/$2"; }

mk empty .
case_ empty 1 "no input found in /input: looked for inputs.json"

mk truncated images/ct; mk truncated images/t1-mri
head -c 300 test/images/ct/case_01_CT.mha > "$W/truncated/input/images/ct/case_01_CT.mha"
cp test/images/t1-mri/case_01_T1.mha "$W/truncated/input/images/t1-mri/"
case_ truncated 1 "case_01_CT.mha: cannot be read as an image"
grep -q '"error_messages": \[' "$W/truncated/output/results.json" \
    && grep -q "cannot be read" "$W/truncated/output/results.json" \
    || { echo "[faulty] FAIL  truncated: results.json lacks the error message" >&2; fails=$((fails + 1)); }

mk unequal images/ct; mk unequal images/t1-mri
cp test/images/ct/case_01_CT.mha "$W/unequal/input/images/ct/"
cp test/images/t1-mri/case_01_T1.mha "$W/unequal/input/images/t1-mri/a_T1.mha"
cp test/images/t1-mri/case_01_T1.mha "$W/unequal/input/images/t1-mri/b_T1.mha"
case_ unequal 1 "1 CT images but 2 MR images"

mk duplicate images/ct
cp test/images/ct/case_01_CT.mha "$W/duplicate/input/images/ct/a_CT.mha"
cp test/images/ct/case_01_CT.mha "$W/duplicate/input/images/ct/b_CT.mha"
head -c 300 test/images/ct/case_01_CT.mha > "$W/duplicate/input/images/ct/a_CT.mha"   # a fails fast…
cp "$W/duplicate/input/images/ct/a_CT.mha" "$W/duplicate/input/images/ct/b_CT.mha"    # …b repeats it
case_ duplicate 1 "b_CT.mha is identical to a_CT.mha"

mk huge images/ct
printf 'ObjectType = Image\nNDims = 3\nBinaryData = True\nTransformMatrix = 1 0 0 0 1 0 0 0 1\nOffset = 0 0 0\nElementSpacing = 0.5 0.5 0.5\nDimSize = 2048 2048 1200\nElementType = MET_SHORT\nElementDataFile = huge_CT.raw\n' \
    > "$W/huge/input/images/ct/huge_CT.mha"
case_ huge 1 "needs about"

mk ambiguous images/ct-a; mk ambiguous images/ct-b
cp test/images/ct/case_01_CT.mha "$W/ambiguous/input/images/ct-a/"
cp test/images/t1-mri/case_01_T1.mha "$W/ambiguous/input/images/ct-b/"
echo '[{"socket": {"slug": "ct-a", "relative_path": "images/ct-a"}}, {"socket": {"slug": "ct-b", "relative_path": "images/ct-b"}}]' \
    > "$W/ambiguous/input/inputs.json"
case_ ambiguous 1 "pass --ct-socket SLUG"

mk readonly_output images/ct
cp test/images/ct/case_01_CT.mha "$W/readonly_output/input/images/ct/"
mkdir -p "$W/readonly_output/ro"
OUTPUT_MOUNT="$W/readonly_output/ro:/output:ro" case_ readonly_output 1 "cannot write to the output folder"

mk bad_model images/ct
cp test/images/ct/case_01_CT.mha "$W/bad_model/input/images/ct/"
mkdir -p "$W/bad_model/model" && cp model/*.json "$W/bad_model/model/" && head -c 1000 model/fold_0.pt > "$W/bad_model/model/fold_0.pt"
chmod -R a+rX "$W/bad_model/model"
case_ bad_model 1 "does not match the sha256 in metadata.json" -v "$W/bad_model/model:/opt/ml/model:ro"

[ "$fails" = 0 ] || { echo "[faulty] $fails case(s) failed" >&2; exit 1; }
echo "[faulty] all faulty-input cases behaved as the README says"
