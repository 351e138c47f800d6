#!/usr/bin/env bash
# CI, container part: a private Docker engine, a local base image (no registry can be
# reached), the project's image built offline from a wheelhouse, the image checks, the
# template-style ./test.sh, and ./export.sh. The engine is stopped by PID at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$SECONDS
source .ci/docker_engine.sh start
trap '.ci/docker_engine.sh stop "$DOCKER_ENGINE_DIR"' EXIT
echo "[ci-docker] hadolint: $(.venv/bin/hadolint --version)"
.venv/bin/hadolint Dockerfile
PYTHON=.venv/bin/python docker/build_local_base.sh local/hanseg-base:cpu
echo "[ci-docker] base ready after $((SECONDS - t0)) s"
PATH="$PWD/.venv/bin:$PATH" ./build.sh --base local/hanseg-base:cpu --wheelhouse --tag hanseg-oar:ci
docker/check_image.sh hanseg-oar:ci
docker/faulty_inputs.sh hanseg-oar:ci
./test.sh hanseg-oar:ci
echo "[ci-docker] test.sh passed after $((SECONDS - t0)) s"
PYTHON=.venv/bin/python docker/full_size.sh hanseg-oar:ci
echo "[ci-docker] full-size case passed after $((SECONDS - t0)) s"
./export.sh hanseg-oar:ci
gzip -t export/hanseg-oar_ci.tar.gz
tar -tzf export/model.tar.gz > export/model.list   # (grep -q on a pipe would SIGPIPE tar)
grep -qx './plans.json' export/model.list || { echo "[ci-docker] model.tar.gz lacks plans.json" >&2; exit 1; }
rm -rf export
echo "[ci-docker] done in $((SECONDS - t0)) s"
