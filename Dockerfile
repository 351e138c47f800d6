# HaN-Seg OAR segmentation: the Grand-Challenge / hospital inference image.
#   ./build.sh                       (CUDA PyTorch base, torch comes from it)
#   ./build.sh --base local/hanseg-base:cpu --wheelhouse   (offline, see docs/container.md)
# The base must provide python3 (3.9+) with torch >= 2.1; runtime deps are installed on top.
ARG BASE_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime
FROM ${BASE_IMAGE}

# PIP_BREAK_SYSTEM_PACKAGES: Debian-based bases mark their Python as externally managed;
# the image is single-purpose, so installing into it is intended (no-op on conda bases).
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_BREAK_SYSTEM_PACKAGES=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore

# The platform refuses images that run as root. A fixed numeric id (unlikely to clash with a
# base image's users) lets Kubernetes-style runAsNonRoot checks verify it without /etc/passwd.
RUN groupadd --system --gid 10001 user \
    && useradd --system --uid 10001 --gid 10001 --create-home --no-log-init user \
    && mkdir -p /opt/app /opt/ml/model /output \
    && chown 10001:10001 /output

WORKDIR /opt/app

# Runtime deps only. A wheelhouse/ with *.whl files (build.sh --wheelhouse) means an offline
# install with --no-index; an empty one means the package index. torch is already in the
# base and satisfies requirements.txt, so pip leaves it alone.
COPY requirements.txt /tmp/requirements.txt
COPY wheelhouse/ /tmp/wheelhouse/
RUN if ls /tmp/wheelhouse/*.whl >/dev/null 2>&1; then \
        python3 -m pip install --no-cache-dir --no-index --find-links /tmp/wheelhouse -r /tmp/requirements.txt; \
    else \
        python3 -m pip install --no-cache-dir -r /tmp/requirements.txt; \
    fi \
    && rm -rf /tmp/wheelhouse /tmp/requirements.txt

# Inference code and the baked model only (no training/, tests, data), owned by root and
# read-only for the user that runs it.
COPY hanseg/ /opt/app/hanseg/
COPY process.py /opt/app/
COPY model/ /opt/app/model/
# The DICOM node's storage (docker-compose.yml mounts a volume here), the one place it writes.
RUN mkdir -p /storage && chown 10001:10001 /storage

USER 10001:10001
# Fail the build, not the first job, if the code or the baked model cannot load.
RUN python3 -c "from hanseg.model_dir import load_model_dir; m = load_model_dir('/opt/app/model'); print('model ok:', m.plans.network.name, len(m.weight_paths), 'fold(s)')"

ENTRYPOINT ["python3", "/opt/app/process.py"]
