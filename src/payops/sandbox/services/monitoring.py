"""Monitoring: Debian's prometheus-alertmanager (notifying the sink), prometheus-blackbox-exporter
(probing the site from outside, through nginx: uptime), prometheus-node-exporter (the machine's
CPU, memory and disks, as a host's) and prometheus (scraping the app, the probe and the node)."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from payops.sandbox.services.base import HOST, Package, Service, State, render, write_private

# Alert thresholds: the runbook's targets. Short `for:` so that tests see them fire.
ALERT_VALUES = MappingProxyType({
    "rate_window": "1m",
    "alert_for": "5s",
    "payment_success_rate_min": 0.95,
    "response_time_max_seconds": 5,
    "error_rate_max": 0.01,
    "webhook_backlog_max": 0,
    "webhook_backlog_for": "30s",
})


class MonitoringDaemon(Service):
    """A Prometheus-project daemon: ready at /-/ready, data in <service>/data."""

    health_path = "/-/ready"

    def start(self, state: State) -> None:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        super().start(state)


class AlertmanagerService(MonitoringDaemon):
    name = "alertmanager"
    preferred_port = 19093
    depends_on = ("sink",)
    package = Package("prometheus-alertmanager", "prometheus-alertmanager")
    config_name = "alertmanager.yml"

    def config(self, state: State) -> str:
        return render("alertmanager.yml", webhook_url=f"http://{HOST}:{state['ports']['sink']}/alertmanager")

    def command(self, state: State) -> list[str]:
        port = state["ports"]["alertmanager"]
        return [self.tools["alertmanager"], f"--config.file={self.config_path}",
                f"--storage.path={self.directory / 'data'}", f"--web.listen-address={HOST}:{port}",
                "--cluster.listen-address=", f"--web.external-url=http://{HOST}:{port}"]


class BlackboxService(MonitoringDaemon):
    name = "blackbox"
    preferred_port = 19115
    package = Package("prometheus-blackbox-exporter", "prometheus-blackbox-exporter")
    config_name = "blackbox.yml"
    health_path = "/-/healthy"

    def config(self, state: State) -> str:
        return render("blackbox.yml")

    def command(self, state: State) -> list[str]:
        return [self.tools["blackbox"], f"--config.file={self.config_path}",
                f"--web.listen-address={HOST}:{state['ports']['blackbox']}"]


class NodeService(MonitoringDaemon):
    name = "node"
    preferred_port = 19100
    package = Package("prometheus-node-exporter", "prometheus-node-exporter")
    config_name = "web.yml"
    health_path = "/"

    def config(self, state: State) -> str:
        return "---\n# The node exporter's web configuration: plain HTTP on loopback.\n{}\n"

    def command(self, state: State) -> list[str]:
        # What the resource KPIs read (CPU, memory, disks, load), not every collector.
        return [self.tools["node"], f"--web.listen-address={HOST}:{state['ports']['node']}",
                f"--web.config.file={self.config_path}", "--collector.disable-defaults", "--collector.cpu",
                "--collector.meminfo", "--collector.filesystem", "--collector.loadavg"]


class PrometheusService(MonitoringDaemon):
    name = "prometheus"
    preferred_port = 19090
    depends_on = ("app", "alertmanager", "blackbox", "node")
    package = Package("prometheus", "prometheus")
    config_name = "prometheus.yml"

    def config(self, state: State) -> str:
        # The rules file is rewritten every time; only prometheus.yml decides a restart.
        rules = self.directory / "alerts.yml"
        write_private(rules, render("alerts.yml", **alert_values()))
        ports = state["ports"]
        return render("prometheus.yml", rules_path=str(rules), app_port=ports["app"],
                      prometheus_port=ports["prometheus"], alertmanager_port=ports["alertmanager"],
                      # An `up --only prometheus` may have no edge yet: its preferred port, probed in vain.
                      blackbox_port=ports["blackbox"], edge_port=ports.get("edge", 18080),
                      node_port=ports["node"])

    def command(self, state: State) -> list[str]:
        port = state["ports"]["prometheus"]
        return [self.tools["prometheus"], f"--config.file={self.config_path}",
                f"--storage.tsdb.path={self.directory / 'data'}", f"--web.listen-address={HOST}:{port}",
                "--web.enable-lifecycle", "--storage.tsdb.retention.time=40d",
                f"--web.external-url=http://{HOST}:{port}"]


def alert_values() -> dict[str, Any]:
    values: dict[str, Any] = dict(ALERT_VALUES)
    values["payment_success_rate_min_percent"] = f"{values['payment_success_rate_min'] * 100:g}"
    values["error_rate_max_percent"] = f"{values['error_rate_max'] * 100:g}"
    return values
