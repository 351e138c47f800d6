# Sourced by test.sh and docker/faulty_inputs.sh: the `docker run` flags of Grand-Challenge's
# template test (one place, so the two runs cannot drift apart).
# shellcheck shell=bash
PLATFORM_FLAGS=(--rm --memory=4g --memory-swap=4g --network=none --cap-drop=ALL
                --security-opt=no-new-privileges --shm-size=128m --pids-limit=256)
