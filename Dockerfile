# syntax=docker/dockerfile:1
# The Qifu image (SPEC §8): one image for migrate, api, worker and beat (docker-compose.yml).
# Built in two stages; the dependency layer is cached: `uv sync` of the locked dependencies runs
# before the source is copied, so a change to the code rebuilds only the last layers.
# PYTHON_IMAGE: any Debian-based CPython 3.11+ image; an office on an intranet passes its own
# mirror's (docs/operations.md "Building the image").
ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE} AS build
RUN pip install --no-cache-dir "uv>=0.9,<1"
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never UV_PROJECT_ENVIRONMENT=/app/.venv
WORKDIR /app
# 1. dependencies only (cached while pyproject.toml and uv.lock do not change)
COPY pyproject.toml uv.lock ./
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-project
# 2. the project itself
COPY README.md alembic.ini ./
COPY service ./service
COPY workers ./workers
COPY qifu ./qifu
COPY seeds ./seeds
COPY migrations ./migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

FROM ${PYTHON_IMAGE}
# a non-root user owns nothing but its home and the metrics directory
RUN groupadd --system --gid 10001 qifu \
    && useradd --system --uid 10001 --gid qifu --home-dir /home/qifu --create-home qifu \
    && install -d -o qifu -g qifu /tmp/qifu-metrics
WORKDIR /app
COPY --from=build --chown=root:root /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    QIFU_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/tmp/qifu-metrics
USER 10001:10001
EXPOSE 8000 9540
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
CMD ["qifu", "serve", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
