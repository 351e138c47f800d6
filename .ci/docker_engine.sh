#!/usr/bin/env bash
# Start or stop a private Docker engine for CI (no system service on the CI machine).
#   source .ci/docker_engine.sh start   → exports DOCKER_HOST, DOCKER_ENGINE_DIR
#   .ci/docker_engine.sh stop DIR        → stops that engine by PID and removes DIR
# Installs docker.io and debootstrap from Debian when missing. Never kills by name.
set -euo pipefail

engine_start() {
    if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null; then
        echo "[docker] installing docker.io and debootstrap from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io debootstrap >/dev/null
    fi
    DOCKER_ENGINE_DIR=$(mktemp -d /tmp/hanseg-dockerd.XXXXXX)
    dockerd --data-root="$DOCKER_ENGINE_DIR/data" --exec-root="$DOCKER_ENGINE_DIR/exec" \
        --pidfile="$DOCKER_ENGINE_DIR/pid" --host="unix://$DOCKER_ENGINE_DIR/sock" \
        --iptables=false --bridge=none >"$DOCKER_ENGINE_DIR/log" 2>&1 &
    export DOCKER_HOST="unix://$DOCKER_ENGINE_DIR/sock" DOCKER_ENGINE_DIR
    for _ in $(seq 60); do
        docker info >/dev/null 2>&1 && { echo "[docker] engine up: $DOCKER_HOST"; return 0; }
        sleep 1
    done
    echo "[docker] engine did not start; its log:" >&2
    tail -20 "$DOCKER_ENGINE_DIR/log" >&2
    return 1
}

engine_stop() {
    local dir="$1"
    [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null || true
    for _ in $(seq 30); do [ -e "$dir/pid" ] || break; sleep 1; done
    umount "$dir/exec/netns/default" 2>/dev/null || true
    rm -rf "$dir" 2>/dev/null || echo "[docker] could not remove all of $dir" >&2
    echo "[docker] engine stopped"
}

case "${1:-}" in
    start) engine_start ;;
    stop) engine_stop "${2:?engine directory}" ;;
    *) echo "usage: source $0 start | $0 stop DIR" >&2; exit 2 ;;
esac
