FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY ledger ledger
COPY projections projections
COPY api api
COPY workers workers
COPY runtime runtime
COPY usage_ledger usage_ledger
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["usage-ledger", "serve", "--host", "0.0.0.0"]
