#!/usr/bin/env bash
# Inspect a built image for the platform's rules (CI runs it after ./build.sh):
# non-root numeric user, process.py as entry point, only inference files in /opt/app, every
# runtime module importing, code and baked model not writable by the user that runs them.
#   docker/check_image.sh [IMAGE]   (default hanseg-oar:latest)
set -euo pipefail
IMAGE="${1:-hanseg-oar:latest}"
fails=0
check() {  # description, command...
    local what="$1"; shift
    if "$@" >/dev/null 2>&1; then echo "[check] ok    $what"; else echo "[check] FAIL  $what" >&2; fails=$((fails + 1)); fi
}
run() { docker run --rm --network=none --entrypoint "$@"; }
user=$(docker image inspect -f '{{.Config.User}}' "$IMAGE")
check "image user is set and not root ($user)" test -n "$user" -a "${user%%:*}" != root -a "${user%%:*}" != 0
uid=$(run id "$IMAGE" -u || echo "?")
check "container runs as uid $uid, not 0" test "$uid" != 0
entry=$(docker image inspect -f '{{json .Config.Entrypoint}}' "$IMAGE")
check "entry point runs process.py ($entry)" grep -q '/opt/app/process.py' <<<"$entry"
contents=$( (run ls "$IMAGE" -A /opt/app || true) | sort | tr '\n' ' ')
check "/opt/app holds only hanseg/ model/ process.py ($contents)" test "$contents" = "hanseg model process.py "
check "code and baked model are not writable by the user" \
    run sh "$IMAGE" -c 'test ! -w /opt/app/process.py && test ! -w /opt/app/hanseg && test ! -w /opt/app/model/plans.json'
check "every runtime module imports with requirements.txt alone" \
    run python3 "$IMAGE" -c 'import importlib, pkgutil, hanseg; [importlib.import_module(m.name) for m in pkgutil.walk_packages(hanseg.__path__, "hanseg.")]'
check "baked model loads with its weight hashes" \
    run python3 "$IMAGE" -c 'from hanseg.model_dir import load_model_dir; load_model_dir("/opt/app/model")'
check "no network inside (--network=none honoured)" \
    bash -c "! docker run --rm --network=none --entrypoint python3 '$IMAGE' -c 'import socket; socket.create_connection((\"1.1.1.1\", 53), 3)'"
[ "$fails" = 0 ] || { echo "[check] $fails check(s) failed" >&2; exit 1; }
echo "[check] all image checks passed"
