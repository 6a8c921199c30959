"""The sandbox's services, one class each behind the `Service` interface (base.py), in start order.

    postgres  s3  sink  ikhokha  app  alertmanager  blackbox  node  prometheus  edge

Each one's dependencies come before it; `down` goes backwards.
"""

from __future__ import annotations

from collections.abc import Iterable

from payops.errors import PayopsError
from payops.sandbox.services.base import Context, Service
from payops.sandbox.services.edge import EdgeService
from payops.sandbox.services.monitoring import AlertmanagerService, BlackboxService, NodeService, PrometheusService
from payops.sandbox.services.postgres import PostgresService
from payops.sandbox.services.programs import AppService, IkhokhaService, SinkService
from payops.sandbox.services.s3 import S3Service

SERVICE_TYPES: tuple[type[Service], ...] = (
    PostgresService, S3Service, SinkService, IkhokhaService, AppService,
    AlertmanagerService, BlackboxService, NodeService, PrometheusService, EdgeService,
)
SERVICES: tuple[str, ...] = tuple(kind.name for kind in SERVICE_TYPES)


def preferred_ports() -> dict[str, int]:
    return {kind.name: kind.preferred_port for kind in SERVICE_TYPES}


def build(ctx: Context) -> dict[str, Service]:
    """One instance of each service, by name, in start order."""
    return {kind.name: kind(ctx) for kind in SERVICE_TYPES}


def with_dependencies(only: Iterable[str], kinds: Iterable[type[Service]] = SERVICE_TYPES) -> list[str]:
    """The named services and everything they need, directly or not, in start order."""
    kinds = tuple(kinds)
    depends_on = {kind.name: kind.depends_on for kind in kinds}
    order = [kind.name for kind in kinds]
    unknown = sorted(set(only) - set(order))
    if unknown:
        raise PayopsError(f"unknown service(s) {', '.join(unknown)}: choose from {', '.join(order)}")
    chosen: set[str] = set()
    pending = list(only)
    while pending:
        name = pending.pop()
        if name not in chosen:
            chosen.add(name)
            pending.extend(depends_on[name])
    return [name for name in order if name in chosen]


def waits_for(name: str, gates: set[str], kinds: Iterable[type[Service]] = SERVICE_TYPES) -> bool:
    """Whether the service depends, directly or not, on one of `gates` (ready_before_dependents)."""
    depends_on = {kind.name: kind.depends_on for kind in kinds}
    seen: set[str] = set()
    pending = list(depends_on[name])
    while pending:
        dependency = pending.pop()
        if dependency in gates:
            return True
        if dependency not in seen:
            seen.add(dependency)
            pending.extend(depends_on[dependency])
    return False


__all__ = ["SERVICES", "SERVICE_TYPES", "Context", "Service", "build", "preferred_ports", "waits_for",
           "with_dependencies"]
