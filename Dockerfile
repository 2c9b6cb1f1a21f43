# The services' image: one console script, `synctec-webhooks <role>`.
#   docker build -t synctec-webhooks .      (deploy/compose builds it for you)
# The Kafka broker is not in it: in compose and on Kubernetes it is a cluster of its own.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY synctec_webhooks synctec_webhooks
COPY producers producers
COPY consumers consumers
COPY schemas schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin synctec
# Metrics on every interface (the container's own), JSON logs for the log shipper.
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SYNCTEC_METRICS_HOST=0.0.0.0 \
    SYNCTEC_LOG_FORMAT=json
USER 10001
# /metrics: run 9400, fanout 9401, deliver 9402, retry 9403, admin 9404
# (SYNCTEC_METRICS_PORT overrides); the admin API 8080 (SYNCTEC_ADMIN_PORT)
EXPOSE 9400 9401 9402 9403 9404 8080
ENTRYPOINT ["synctec-webhooks"]
CMD ["run"]
