"""The sandbox's service graph and port choice, without starting anything: every service declares
what it needs, the start order puts dependencies first, `--only` pulls in what a service needs,
and a service moved off its port says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from payops.errors import PayopsError
from payops.sandbox import services
from payops.sandbox.ports import assign_ports, choose_port, parse_port_overrides
from payops.sandbox.services.base import Context

NAMES = ("postgres", "s3", "sink", "ikhokha", "app", "alertmanager", "blackbox", "node", "prometheus", "edge")


def test_every_service_once_in_start_order_with_dependencies_first():
    assert services.SERVICES == NAMES
    for position, kind in enumerate(services.SERVICE_TYPES):
        for dependency in kind.depends_on:
            assert services.SERVICES.index(dependency) < position, (kind.name, dependency)


def test_preferred_ports_are_the_documented_ones_and_distinct():
    ports = services.preferred_ports()
    assert ports == {"edge": 18080, "app": 18081, "ikhokha": 18082, "s3": 18083, "sink": 18084,
                     "postgres": 15432, "prometheus": 19090, "alertmanager": 19093, "blackbox": 19115, "node": 19100}
    assert len(set(ports.values())) == len(ports)


def test_the_debian_packages_are_named():
    packages = {kind.name: kind.package.name for kind in services.SERVICE_TYPES if kind.package}
    assert packages == {"postgres": "postgresql", "alertmanager": "prometheus-alertmanager",
                        "prometheus": "prometheus", "edge": "nginx", "blackbox": "prometheus-blackbox-exporter",
                        "node": "prometheus-node-exporter"}


@pytest.mark.parametrize(("only", "expected"), [
    (["sink"], ["sink"]),
    (["app"], ["postgres", "ikhokha", "app"]),
    (["prometheus"], ["postgres", "sink", "ikhokha", "app", "alertmanager", "blackbox", "node", "prometheus"]),
    (["edge", "s3"], ["postgres", "s3", "ikhokha", "app", "edge"]),
])
def test_only_brings_what_a_service_needs_in_start_order(only, expected):
    assert services.with_dependencies(only) == expected


def test_an_unknown_service_is_refused_with_the_choices():
    with pytest.raises(PayopsError, match=r"unknown service.*nginx.*choose from postgres, s3"):
        services.with_dependencies(["nginx"])


def test_what_waits_for_postgres():
    gates = {kind.name for kind in services.SERVICE_TYPES if kind.ready_before_dependents}
    assert gates == {"postgres"}
    waiting = {name for name in NAMES if services.waits_for(name, gates)}
    assert waiting == {"app", "prometheus", "edge"}


def test_each_service_has_its_own_directory_log_and_config(tmp_path):
    built = services.build(Context(dir=tmp_path, root=Path.cwd(), say=print))
    assert list(built) == list(NAMES)
    assert built["edge"].log_path == tmp_path / "edge" / "logs" / "error.log"
    assert built["sink"].log_path == tmp_path / "sink" / "sink.log"
    assert built["app"].config_path == tmp_path / "hosts" / "app-1" / "app" / "shared" / "config.json"
    assert built["prometheus"].config_path == tmp_path / "prometheus" / "prometheus.yml"
    roots = {name: service.deploy_root().path for name, service in built.items() if service.deploy_root()}
    assert roots == {"app": tmp_path / "hosts" / "app-1" / "app", "edge": tmp_path / "hosts" / "web-1" / "frontend"}


# ------------------------------------------------------------------------------------ ports
def free_except(*busy: int):
    return lambda port: port not in busy


def test_a_free_recorded_port_is_kept_silently():
    choice = choose_port("sink", 40001, 18084, set(), free_except(), lambda: 50000)
    assert (choice.port, choice.warning) == (40001, None)


def test_a_busy_recorded_port_moves_with_a_warning_naming_service_and_ports():
    choice = choose_port("sink", 40001, 18084, set(), free_except(40001), lambda: 50000)
    assert choice.port == 18084
    assert "sink" in choice.warning and "40001" in choice.warning and "port 18084" in choice.warning
    assert choice.warning.startswith("warning: port 40001 for sink")


def test_recorded_and_preferred_busy_take_any_free_port():
    choice = choose_port("sink", 40001, 18084, set(), free_except(40001, 18084), lambda: 50000)
    assert choice.port == 50000
    assert "40001" in choice.warning and "50000" in choice.warning


def test_a_busy_preferred_port_on_a_first_up_is_reported():
    choice = choose_port("sink", None, 18084, set(), free_except(18084), lambda: 50000)
    assert choice.port == 50000
    assert "port 18084 for sink is in use" in choice.warning and "50000" in choice.warning


def test_a_port_of_our_own_running_service_is_not_reused():
    choice = choose_port("sink", 40001, 18084, {40001}, free_except(), lambda: 50000)
    assert choice.port == 18084
    assert "another service of this sandbox" in choice.warning


def test_assign_ports_keeps_running_services_and_avoids_preferred_ports():
    ports = {"app": 41000, "sink": 40001}
    preferred = {"app": 18081, "sink": 18084, "s3": 18083}
    avoided: list[set[int]] = []

    def free_port(avoid: set[int]) -> int:
        avoided.append(avoid)
        return 50000

    warnings = assign_ports(ports, ["s3", "sink", "app"], {"app": 123}, preferred,
                            free_except(40001, 18084), free_port)
    assert ports == {"app": 41000, "sink": 50000, "s3": 18083}
    assert avoided == [{41000, 18083, 18081, 18084}]
    assert len(warnings) == 1 and warnings[0].startswith("warning: port 40001 for sink")


def test_port_overrides():
    assert parse_port_overrides("edge=28080; app=28081,", NAMES) == {"edge": 28080, "app": 28081}
    with pytest.raises(PayopsError, match="bad port override 'web=1'"):
        parse_port_overrides("web=1", NAMES)
