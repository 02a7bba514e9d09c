# The hwtune operator image: kopf controller, admission webhook, report endpoint (8080),
# metrics (9090), webhook (9443). No torch: `hwtune[operator]` pulls none (tests/test_images.py
# checks the dependency closure); the surrogate has its own image (Dockerfile.surrogate).
# Expected size about 500 MB: python slim ~125 MB plus 385 MB of packages (measured by
# installing hwtune[operator] into a fresh venv: 61 distributions, no torch; kubernetes 126 MB,
# numpy 73 MB, matplotlib + fonttools + pillow 88 MB, cryptography 16 MB).
# Build from the repository root: docker build -t ghcr.io/hwtune/hwtune:0.1.0 .
FROM python:3.11.14-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11.14-slim-bookworm
LABEL org.opencontainers.image.title="hwtune" \
      org.opencontainers.image.description="Hardware-aware multi-objective hyperparameter tuning operator"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    MPLCONFIGDIR=/tmp/matplotlib
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin hwtune
COPY --from=build /wheels /wheels
# The versions CI tests with (hack/constraints.txt): a new release of an unpinned transitive
# dependency cannot change what the image runs.
COPY hack/constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt "$(ls /wheels/hwtune-*.whl)[operator]" \
    && rm -rf /wheels /tmp/constraints.txt
USER 10001
# reports, metrics, webhook: the chart's containerPorts
EXPOSE 8080 9090 9443
ENTRYPOINT ["hwtune"]
CMD ["operator"]
