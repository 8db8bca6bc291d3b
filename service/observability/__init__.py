"""Operations: Prometheus metrics (``metrics``, ``multiproc``). Structured logs with a request id
are :mod:`service.logs` (below the domain: the outbox carries the id into tasks)."""
