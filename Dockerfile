# One image for the consumer and the API (docker-compose.yml runs it twice).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY consumer ./consumer
COPY segmenter ./segmenter
COPY api ./api
RUN pip install --no-cache-dir .
ENV INSIDERS_KAFKA_BOOTSTRAP=kafka:9092 \
    INSIDERS_REDIS_URL=redis://redis:6379/0
ENTRYPOINT ["insiders"]
