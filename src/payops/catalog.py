"""The runbook catalog (runbook.yml): every runbook command and the procedure that implements it."""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from payops.errors import PayopsError

KINDS = ("read-only", "mutating", "destructive")
STATUSES = ("implemented", "planned")
VAR_TYPES = ("str", "int", "float", "bool", "list", "dict", "ip_or_network_list")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class VarSpec:
    name: str
    type: str = "str"
    required: bool = False
    description: str = ""
    choices: tuple[Any, ...] = ()
    secret: bool = False

    def coerce(self, raw: str) -> Any:
        """Turn an `-e key=value` string into the declared type, or say what was expected."""
        value: Any
        try:
            if self.type == "str":
                value = raw
            elif self.type == "int":
                value = int(raw)
            elif self.type == "float":
                value = float(raw)
            elif self.type == "bool":
                lowered = raw.strip().lower()
                if lowered not in _TRUE | _FALSE:
                    raise ValueError
                value = lowered in _TRUE
            elif self.type in ("list", "ip_or_network_list"):
                value = json.loads(raw) if raw.lstrip().startswith("[") else [
                    item.strip() for item in raw.split(",") if item.strip()
                ]
                if not isinstance(value, list):
                    raise ValueError
                if self.type == "ip_or_network_list":
                    for item in value:
                        ipaddress.ip_network(str(item), strict=False)
            else:  # dict
                value = json.loads(raw)
                if not isinstance(value, dict):
                    raise ValueError
        except ValueError:
            expected = {
                "int": "an integer",
                "float": "a number",
                "bool": "true or false",
                "list": "a comma-separated list or a JSON list",
                "ip_or_network_list": "addresses or networks (10.0.0.1, 10.0.0.0/8), comma-separated",
                "dict": "a JSON object",
            }[self.type]
            raise PayopsError(f"-e {self.name}={raw!r}: {self.name} must be {expected}") from None
        if self.choices and value not in self.choices:
            allowed = ", ".join(map(str, self.choices))
            raise PayopsError(f"-e {self.name}={raw!r}: {self.name} must be one of {allowed}")
        return value


@dataclass(frozen=True)
class Entry:
    command: str
    runbook: str
    section: str
    purpose: str
    kind: str
    status: str
    playbook: str | None = None
    vars: tuple[VarSpec, ...] = ()
    schedule: str | None = None
    notes: str = ""
    extension: bool = False

    @property
    def implemented(self) -> bool:
        return self.status == "implemented"

    def var(self, name: str) -> VarSpec | None:
        return next((spec for spec in self.vars if spec.name == name), None)

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "runbook": self.runbook,
            "section": self.section,
            "purpose": self.purpose,
            "kind": self.kind,
            "status": self.status,
            "playbook": self.playbook,
            "vars": {
                spec.name: {
                    "type": spec.type,
                    "required": spec.required,
                    "description": spec.description,
                    **({"choices": list(spec.choices)} if spec.choices else {}),
                    **({"secret": True} if spec.secret else {}),
                }
                for spec in self.vars
            },
            "schedule": self.schedule,
            "notes": self.notes,
            "extension": self.extension,
        }


@dataclass
class Catalog:
    path: Path
    entries: list[Entry] = field(default_factory=list)

    def find(self, command: str) -> Entry:
        """The entry for a command as the runbook writes it (`npm run` may be included)."""
        wanted = command.strip()
        wanted = wanted.removeprefix("npm run ").strip()
        for entry in self.entries:
            if wanted in (entry.command, entry.runbook):
                return entry
        names = [entry.command for entry in self.entries]
        close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; `payops list` shows them all"
        raise PayopsError(f"unknown runbook command {command!r}{hint}")

    def by_section(self) -> dict[str, list[Entry]]:
        grouped: dict[str, list[Entry]] = {}
        for entry in self.entries:
            grouped.setdefault(entry.section, []).append(entry)
        return grouped


def _parse_vars(command: str, raw: Any) -> tuple[VarSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise PayopsError(f"runbook.yml: {command}: vars must be a mapping of name to spec")
    specs = []
    for name, spec in raw.items():
        spec = spec or {}
        kind = spec.get("type", "str")
        if kind not in VAR_TYPES:
            raise PayopsError(f"runbook.yml: {command}: var {name}: type must be one of {', '.join(VAR_TYPES)}")
        specs.append(
            VarSpec(
                name=str(name),
                type=kind,
                required=bool(spec.get("required", False)),
                description=str(spec.get("description", "")),
                choices=tuple(spec.get("choices") or ()),
                secret=bool(spec.get("secret", False)),
            )
        )
    return tuple(specs)


def load(path: Path) -> Catalog:
    """Read and check runbook.yml; a malformed entry is an error naming the entry and the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise PayopsError(f"{path}: the runbook catalog is missing") from None
    except yaml.YAMLError as exc:
        raise PayopsError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("commands"), list):
        raise PayopsError(f"{path}: expected a mapping with a `commands` list")
    catalog = Catalog(path=path)
    seen: set[str] = set()
    for index, item in enumerate(data["commands"]):
        where = f"{path.name}: commands[{index}]"
        if not isinstance(item, dict) or not item.get("command"):
            raise PayopsError(f"{where}: each entry needs a `command`")
        command = str(item["command"])
        where = f"{path.name}: {command}"
        if command in seen:
            raise PayopsError(f"{where}: listed twice")
        seen.add(command)
        for key in ("runbook", "section", "purpose", "kind", "status"):
            if not item.get(key):
                raise PayopsError(f"{where}: `{key}` is missing")
        if item["kind"] not in KINDS:
            raise PayopsError(f"{where}: kind must be one of {', '.join(KINDS)}")
        if item["status"] not in STATUSES:
            raise PayopsError(f"{where}: status must be one of {', '.join(STATUSES)}")
        if item["status"] == "implemented" and not item.get("playbook"):
            raise PayopsError(f"{where}: an implemented entry needs a playbook")
        for retired in ("tags", "extravars"):
            if retired in item:
                raise PayopsError(f"{where}: `{retired}` is no longer read: a command's playbook "
                                  f"({playbook_file(command)}) does exactly its one procedure")
        catalog.entries.append(
            Entry(
                command=command,
                runbook=str(item["runbook"]),
                section=str(item["section"]),
                purpose=str(item["purpose"]),
                kind=str(item["kind"]),
                status=str(item["status"]),
                playbook=item.get("playbook"),
                vars=_parse_vars(command, item.get("vars")),
                schedule=item.get("schedule"),
                notes=str(item.get("notes") or ""),
                extension=bool(item.get("extension", False)),
            )
        )
    return catalog


def runbook_commands(runbook_text: str) -> list[str]:
    """Every command the runbook tells an operator to run, in order, as the catalog names them."""
    found: list[str] = []
    for match in re.finditer(r"npm run ([a-z0-9:-]+)|node (scripts/[A-Za-z0-9._-]+)", runbook_text):
        name = match.group(1) or f"node {match.group(2)}"
        if name not in found:
            found.append(name)
    return found


def markdown_table(catalog: Catalog) -> str:
    """Runbook command -> playbook file, by runbook section, as docs/commands.md shows it."""
    lines = []
    for section, entries in catalog.by_section().items():
        lines += [f"### {section}", "", "| runbook command | playbook | kind |", "|---|---|---|"]
        for entry in entries:
            where = f"`{entry.playbook}`" if entry.implemented else "planned"
            name = f"`{entry.command}`" + (" (payops extension)" if entry.extension else "")
            lines.append(f"| {name} | {where} | {entry.kind} |")
        lines.append("")
    return "\n".join(lines)


def playbook_file(command: str) -> str:
    """Where a command's playbook lives: its name with `:` and `-` turned into `_`, so that the
    runbook's name finds the file (`node scripts/x-y.js` is playbooks/x_y.yml)."""
    name = command.removeprefix("node scripts/").removesuffix(".js")
    return "playbooks/" + re.sub(r"[:\-]", "_", name) + ".yml"


# The catalog's variable types as validate_argument_spec writes them.
SPEC_TYPES = {"str": ("str", None), "int": ("int", None), "float": ("float", None), "bool": ("bool", None),
              "list": ("list", None), "dict": ("dict", None), "ip_or_network_list": ("list", "str")}


def _first_argument_spec(playbook: Path, fixed: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any], str]:
    """The argument_spec of the first task of the first play, following import_playbook; the
    variables the imports fix on the way; and what is wrong when there is none."""
    plays = yaml.safe_load(playbook.read_text()) or []
    if not isinstance(plays, list) or not plays or not isinstance(plays[0], dict):
        return None, fixed, f"{playbook.name} holds no play"
    first = plays[0]
    imported = first.get("ansible.builtin.import_playbook") or first.get("import_playbook")
    if imported:
        return _first_argument_spec(playbook.parent / str(imported), {**fixed, **(first.get("vars") or {})})
    tasks = (first.get("pre_tasks") or []) + (first.get("tasks") or [])
    task = tasks[0] if tasks else {}
    spec = task.get("ansible.builtin.validate_argument_spec") if isinstance(task, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("argument_spec"), dict):
        return None, fixed, (f"the first task of {playbook.name}'s first play is not "
                             "ansible.builtin.validate_argument_spec")
    return spec["argument_spec"], fixed, ""


def spec_problems(entry: Entry, root: Path) -> list[str]:
    """Where the playbook's first validate_argument_spec and the entry's vars disagree."""
    assert entry.playbook is not None
    spec, fixed, problem = _first_argument_spec(root / entry.playbook, {})
    if spec is None:
        return [f"{entry.command}: {problem}"]
    found = []
    declared = {name: option or {} for name, option in spec.items() if name not in fixed}
    for var in entry.vars:
        option = declared.pop(var.name, None)
        if option is None:
            found.append(f"{entry.command}: {entry.playbook} does not validate {var.name}")
            continue
        want_type, want_elements = SPEC_TYPES[var.type]
        if option.get("type", "str") != want_type or (want_elements and option.get("elements") != want_elements):
            found.append(f"{entry.command}: {var.name} is {var.type} in the catalog, "
                         f"{option.get('type', 'str')} in {entry.playbook}")
        if bool(option.get("required", False)) != var.required:
            where = ("the catalog, not " + entry.playbook) if var.required else (entry.playbook + ", not the catalog")
            found.append(f"{entry.command}: {var.name} is required in {where}")
        if tuple(option.get("choices") or ()) != var.choices:
            found.append(f"{entry.command}: {var.name}'s choices differ between the catalog and {entry.playbook}")
    for name in declared:
        found.append(f"{entry.command}: {entry.playbook} takes {name}, the catalog does not list it")
    return found


def tag_readers(root: Path) -> list[str]:
    """Playbooks and roles that read the tags a run was given: a procedure must not need --tags."""
    found = []
    for path in sorted([*root.glob("playbooks/**/*.yml"), *root.glob("roles/**/*.yml")]):
        text = path.read_text()
        for word in ("ansible_run_tags", "ansible_skip_tags"):
            if word in text:
                found.append(f"{path.relative_to(root)} reads {word}")
    return found


def problems(catalog: Catalog, root: Path, runbook_text: str | None = None) -> list[str]:
    """Everything wrong with the catalog against the project and the runbook; empty when sound."""
    found: list[str] = []
    for entry in catalog.entries:
        if not entry.playbook:
            continue
        if entry.playbook != playbook_file(entry.command):
            found.append(f"{entry.command}: its playbook is {entry.playbook}, not {playbook_file(entry.command)}")
        if not (root / entry.playbook).is_file():
            found.append(f"{entry.command}: playbook {entry.playbook} does not exist")
            continue
        found.extend(spec_problems(entry, root))
    found.extend(tag_readers(root))
    if runbook_text is not None:
        listed = {entry.command for entry in catalog.entries}
        in_runbook = runbook_commands(runbook_text)
        for command in in_runbook:
            if command not in listed:
                found.append(f"{command}: in the runbook but not in the catalog")
        for entry in catalog.entries:
            if entry.command not in in_runbook and not entry.extension:
                found.append(f"{entry.command}: not in the runbook; mark it `extension: true` if it extends it")
    return found
