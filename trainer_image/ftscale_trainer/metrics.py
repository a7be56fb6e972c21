"""Live Prometheus metrics of one training run, built from ftscale.metric_names (the catalogue is
the one place metric names are spelled). Served on a port while training when one is given."""

from __future__ import annotations

from ftscale.metric_names import BY_NAME, TRAINER


class TrainerMetrics:
    """Gauges/counters of the `ftscale_trainer_*` catalogue entries, labelled with this run.

    `port=None` keeps everything in a private registry and serves nothing (tests read it
    through `registry`). Raises OSError if the port is taken.
    """

    def __init__(self, labels: dict[str, str], port: int | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        self._labels = {name: str(labels[name]) for name in TRAINER}
        self._m = {}
        for metric in (m for m in BY_NAME.values() if m.name.startswith("ftscale_trainer_")):
            cls = Counter if metric.kind == "counter" else Gauge
            # prometheus-client appends _total to counters itself.
            name = metric.name[:-len("_total")] if metric.kind == "counter" else metric.name
            self._m[metric.name] = cls(name, metric.help, metric.labels, registry=self.registry).labels(**self._labels)
        self.server = None
        if port is not None:
            self.server, _ = start_http_server(port, registry=self.registry)

    def set(self, name: str, value: float) -> None:
        self._m[name].set(value)

    def add(self, name: str, value: float) -> None:
        self._m[name].inc(value)

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None
