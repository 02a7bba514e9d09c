# The hwtune operator + surrogate image. One image, two entry points:
#   hwtune operator    (kopf controller, report endpoint, metrics)
#   hwtune surrogate   (suggestion service on a GPU node)
# Build: docker build -t hwtune:dev .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
LABEL org.opencontainers.image.title="hwtune" \
      org.opencontainers.image.description="Hardware-aware multi-objective hyperparameter tuning operator"
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin hwtune
COPY --from=build /wheels /wheels
# The wheel's extras pull kopf/kubernetes/prometheus-client and torch/gpytorch/torch-geometric.
RUN pip install --no-cache-dir "$(ls /wheels/hwtune-*.whl)[operator,torch]" && rm -rf /wheels
USER 10001
EXPOSE 8080 8443 9090
ENTRYPOINT ["hwtune"]
CMD ["operator"]
