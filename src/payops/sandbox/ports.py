"""Which port each sandbox service gets: its recorded one, else its preferred one, else a free one."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from payops.errors import PayopsError


@dataclass(frozen=True)
class PortChoice:
    port: int
    warning: str | None = None  # for the operator, when the service does not get the port it expected


def parse_port_overrides(text: str | None, names: Collection[str]) -> dict[str, int]:
    """PAYOPS_SANDBOX_PORTS="edge=28080,app=28081": other preferred ports (a second sandbox, tests)."""
    overrides: dict[str, int] = {}
    for item in (text or "").replace(";", ",").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        name = name.strip()
        if name not in names or not value.strip().isdigit():
            raise PayopsError(f"bad port override {item.strip()!r}: use NAME=PORT with NAME one of "
                              + ", ".join(sorted(names)))
        overrides[name] = int(value)
    return overrides


def choose_port(name: str, recorded: int | None, preferred: int, taken: Collection[int],
                is_free: Callable[[int], bool], any_free: Callable[[], int]) -> PortChoice:
    """The recorded port if it can be had, else the preferred one, else any free port (any_free).

    `taken` holds the ports of the sandbox's own running services. Moving away from a recorded
    port is worth a warning: whatever was configured with it (a colleague's second sandbox on the
    same machine took it, most likely) no longer reaches this service.
    """
    candidates = list(dict.fromkeys(p for p in (recorded, preferred) if p))
    chosen = next((p for p in candidates if p not in taken and is_free(p)), None)
    if chosen is None:
        chosen = any_free()
    if recorded and chosen != recorded:
        holder = "another service of this sandbox" if recorded in taken else "another program"
        return PortChoice(chosen, f"warning: port {recorded} for {name} (recorded in state.json) is in use "
                                  f"by {holder}, perhaps another sandbox on this machine; {name} moves to "
                                  f"port {chosen}")
    if chosen != candidates[0]:
        return PortChoice(chosen, f"warning: port {candidates[0]} for {name} is in use by another program; "
                                  f"using {chosen} instead")
    return PortChoice(chosen)


def assign_ports(ports: dict[str, int], names: list[str], running: Mapping[str, int],
                 preferred: Mapping[str, int], is_free: Callable[[int], bool],
                 free_port: Callable[[set[int]], int]) -> list[str]:
    """Give each service of `names` that does not run a port (in `ports`, in place); the warnings."""
    taken = {ports[name] for name in running if ports.get(name)}
    warnings = []
    for name in names:
        if name in running:
            continue
        choice = choose_port(name, ports.get(name), preferred[name], taken, is_free,
                             lambda: free_port(taken | set(preferred.values())))
        if choice.warning:
            warnings.append(choice.warning)
        ports[name] = choice.port
        taken.add(choice.port)
    return warnings
