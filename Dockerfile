# syntax=docker/dockerfile:1.7
# paykube: one image, two programs.
#   operator (default):  the image's CMD, `paykube-operator`
#   webhook:             command: [paykube-webhook]   (the Helm chart sets both explicitly)
#   dashboard:           command: [paykube-dashboard] (optional, read-only mirror view)
#
# Stage 1 builds wheels for paykube and every dependency; the final stage installs them,
# offline, into a virtualenv on a fresh slim base, then removes the base's pip, setuptools
# and wheel: no compiler, no build backend, no pip, no source tree in the image. Pin the
# base by digest in your registry mirror for reproducible builds
# (PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
COPY webhook/ webhook/
COPY dashboard/ dashboard/
# paykube's own wheel plus wheels of all its dependencies (binary wheels where they exist).
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM ${PYTHON_IMAGE} AS final
ARG PAYKUBE_VERSION=0.1.0
LABEL org.opencontainers.image.title="paykube" \
      org.opencontainers.image.description="Kubernetes-native payments operator and Stripe webhook" \
      org.opencontainers.image.version="${PAYKUBE_VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/paykube/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A virtualenv without pip: the base image's pip installs into it (--python), from the
# wheels of stage 1 only (--no-index), through a bind mount so no wheel lands in a layer.
# Then the base image's own packaging tools go (pip last, as it does the uninstalling),
# with ensurepip's bundled wheels: nothing in the final image can build or install.
# (By then `python` on the PATH is /opt/paykube's, which has no pip: name the base's.)
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv --without-pip /opt/paykube \
 && pip --python /opt/paykube/bin/python install --no-cache-dir --no-index \
        --find-links=/wheels "paykube==${PAYKUBE_VERSION}" \
 && /usr/local/bin/python -m pip uninstall --no-cache-dir -y setuptools wheel pip \
 && rm -rf /usr/local/lib/python3*/ensurepip/_bundled \
 && groupadd --system --gid 10001 paykube \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin paykube
# Numeric, so that Kubernetes can verify runAsNonRoot; the chart also sets uid 10001,
# a read-only root filesystem and a writable emptyDir on /tmp.
USER 10001:10001
WORKDIR /tmp
# operator: liveness 8081 (/healthz), metrics 9090; webhook: 8443; dashboard: 8080.
EXPOSE 8081 9090 8443 8080
CMD ["paykube-operator"]
