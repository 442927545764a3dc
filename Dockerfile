# One image for the consumer and the API (docker-compose.yml runs it twice).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY consumer ./consumer
COPY segmenter ./segmenter
COPY api ./api
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin insiders
# Not root: the code and its packages stay read-only to the process; exports and snapshots
# land in its home.
USER insiders
WORKDIR /home/insiders
ENV INSIDERS_KAFKA_BOOTSTRAP=kafka:9092 \
    INSIDERS_REDIS_URL=redis://redis:6379/0
ENTRYPOINT ["insiders"]
