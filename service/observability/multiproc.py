"""prometheus-client's multiprocess mode, set up before anything imports prometheus-client.

The library chooses where metric values live (memory, or files under ``PROMETHEUS_MULTIPROC_DIR``)
when it is first imported, so the ``qifu`` commands that start several processes (``serve
--workers N``, ``worker``) call :func:`ensure_multiprocess_dir` first; the processes they start
inherit the variable. This module must not import prometheus-client.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def ensure_multiprocess_dir() -> str:
    """Set ``PROMETHEUS_MULTIPROC_DIR`` to a fresh temporary directory unless it is set; when it is
    set, create it and remove an earlier run's value files (a restart starts the counters at 0, as
    Prometheus expects of a restarted process). Returns the directory."""
    path = os.environ.get(MULTIPROC_ENV)
    if not path:
        path = tempfile.mkdtemp(prefix="qifu-metrics-")
        os.environ[MULTIPROC_ENV] = path
        return path
    Path(path).mkdir(parents=True, exist_ok=True)
    for entry in Path(path).glob("*.db"):
        entry.unlink(missing_ok=True)
    return path
