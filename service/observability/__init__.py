"""Operations: Prometheus metrics (metrics), structured logs with a request id (logs)."""
