FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md cli.py ./
COPY ledger ledger
COPY projections projections
COPY api api
COPY workers workers
RUN pip install --no-cache-dir .
EXPOSE 8080
CMD ["usage-ledger", "serve", "--host", "0.0.0.0"]
