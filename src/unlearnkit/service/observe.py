"""Observability: Prometheus metrics read from the service's database (so every process,
API or worker, reports the same numbers) and structured JSON logs.

Metrics:

* ``unlearnkit_deletion_requests{state}``: requests by state (gauge);
* ``unlearnkit_batches{state}``: batches by state (gauge);
* ``unlearnkit_gate_failures_total``: batches whose first candidate failed the gate;
* ``unlearnkit_batch_latency_seconds``: opened -> finished, finished batches (histogram).

Logs are one JSON object per line (``ts``, ``level``, ``msg``, ``event`` and the record's
extra fields). Raw subject ids are never passed to a log call: the service only ever logs
request, batch and line ids.
"""

from __future__ import annotations

import json
import logging
import sys
import time

from .core import REQUEST_STATES, Service

LATENCY_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, float("inf"))
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def render(service: Service) -> tuple[str, str]:
    """The metrics in Prometheus's text format, and its content type."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
    from prometheus_client.exposition import CONTENT_TYPE_LATEST

    counts = service.counts()

    class _Collector:
        def collect(self):
            req = GaugeMetricFamily("unlearnkit_deletion_requests", "Deletion requests by state", labels=["state"])
            for s in REQUEST_STATES:
                req.add_metric([s], counts["requests"].get(s, 0))
            yield req
            bat = GaugeMetricFamily("unlearnkit_batches", "Batches by state", labels=["state"])
            for s, n in sorted(counts["batches"].items()):
                bat.add_metric([s], n)
            yield bat
            yield CounterMetricFamily(
                "unlearnkit_gate_failures",
                "Batches whose first candidate failed the gate",
                value=counts["gate_failures"],
            )
            lat = sorted(counts["latencies"])
            buckets = [
                (str(b) if b != float("inf") else "+Inf", sum(1 for x in lat if x <= b)) for b in LATENCY_BUCKETS
            ]
            h = HistogramMetricFamily("unlearnkit_batch_latency_seconds", "Batch latency, opened to finished", unit="")
            h.add_metric([], buckets, sum_value=float(sum(lat)))
            yield h

    registry = CollectorRegistry()
    registry.register(_Collector())
    return generate_latest(registry).decode(), CONTENT_TYPE_LATEST


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in _STANDARD and not k.startswith("_"):
                out[k] = v
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, default=str)


def configure_logging(level: str = "info", stream=None) -> None:
    """JSON lines on ``stream`` (stderr) for the service's and uvicorn's loggers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    for name in ("unlearnkit.service", "uvicorn", "uvicorn.error"):
        lg = logging.getLogger(name)
        lg.handlers[:] = [handler]
        lg.setLevel(level.upper())
        lg.propagate = False
    logging.getLogger("uvicorn.access").disabled = True  # the service logs each request itself, as JSON
