"""The catalog against the runbook and the project: every command listed, every pointer real."""

from pathlib import Path

import pytest

from payops import catalog
from payops.errors import PayopsError

ROOT = Path(__file__).resolve().parents[2]
RUNBOOK = ROOT.parent / "shared" / "PRODUCTION_OPERATIONAL_RUNBOOK.md"


@pytest.fixture(scope="module")
def cat():
    return catalog.load(ROOT / "runbook.yml")


def test_the_catalog_has_no_problems(cat):
    runbook_text = RUNBOOK.read_text() if RUNBOOK.is_file() else None
    assert catalog.problems(cat, ROOT, runbook_text) == []


@pytest.mark.skipif(not RUNBOOK.is_file(), reason="the runbook lives in ../shared beside the checkout")
def test_every_runbook_command_has_exactly_one_entry(cat):
    in_runbook = catalog.runbook_commands(RUNBOOK.read_text())
    assert len(in_runbook) == 96
    runbook_entries = [e.command for e in cat.entries if not e.extension]
    assert sorted(runbook_entries) == sorted(in_runbook)


def test_a_command_missing_from_the_catalog_is_reported(cat):
    text = "```bash\nnpm run status:emergency\nnpm run payment:teleport\nnode scripts/new-check.js\n```"
    found = catalog.problems(cat, ROOT, text)
    assert "payment:teleport: in the runbook but not in the catalog" in found
    assert "node scripts/new-check.js: in the runbook but not in the catalog" in found


PLAY = """
- name: A procedure
  hosts: localhost
  gather_facts: false
  tasks:
    - name: The request
      ansible.builtin.validate_argument_spec:
        argument_spec:
          reason: {type: str, required: true}
          hosts: {type: list, elements: str}
          level: {type: str, choices: [low, high]}
    - name: Work
      ansible.builtin.debug:
        msg: "{{ 'x' if 'y' in ansible_run_tags else 'z' }}"
"""


def test_missing_and_misnamed_playbooks_disagreeing_specs_and_tag_readers_are_reported(tmp_path):
    (tmp_path / "playbooks" / "shared").mkdir(parents=True)
    (tmp_path / "playbooks" / "a_two.yml").write_text(PLAY)
    (tmp_path / "playbooks" / "shared" / "switch.yml").write_text(PLAY.replace("ansible_run_tags", "[]"))
    (tmp_path / "playbooks" / "a_three.yml").write_text(
        "- name: Thin\n  ansible.builtin.import_playbook: shared/switch.yml\n  vars:\n    level: high\n")
    (tmp_path / "runbook.yml").write_text(
        """
commands:
  - {command: "a:one", runbook: "npm run a:one", section: S, purpose: P, kind: read-only,
     status: implemented, playbook: playbooks/missing.yml}
  - {command: "a:two", runbook: "npm run a:two", section: S, purpose: P, kind: read-only,
     status: implemented, playbook: playbooks/a_two.yml,
     vars: {reason: {type: str}, hosts: {type: ip_or_network_list}, level: {type: int}, extra: {type: str}}}
  - {command: "a:three", runbook: "npm run a:three", section: S, purpose: P, kind: read-only,
     status: implemented, playbook: playbooks/a_three.yml,
     vars: {reason: {type: str, required: true}, hosts: {type: list}}}
"""
    )
    found = catalog.problems(catalog.load(tmp_path / "runbook.yml"), tmp_path)
    assert found == [
        "a:one: its playbook is playbooks/missing.yml, not playbooks/a_one.yml",
        "a:one: playbook playbooks/missing.yml does not exist",
        "a:two: reason is required in playbooks/a_two.yml, not the catalog",
        "a:two: level is int in the catalog, str in playbooks/a_two.yml",
        "a:two: level's choices differ between the catalog and playbooks/a_two.yml",
        "a:two: playbooks/a_two.yml does not validate extra",
        "playbooks/a_two.yml reads ansible_run_tags",
    ]


@pytest.mark.parametrize(("command", "path"), [
    ("payment:emergency-stop", "playbooks/payment_emergency_stop.yml"),
    ("node scripts/pre-deployment-validation-pipeline.js", "playbooks/pre_deployment_validation_pipeline.yml"),
])
def test_a_commands_playbook_is_named_after_it(command, path):
    assert catalog.playbook_file(command) == path

def test_implemented_only_with_a_playbook(tmp_path):
    (tmp_path / "runbook.yml").write_text(
        'commands:\n  - {command: "x:y", runbook: "npm run x:y", section: S, purpose: P,'
        " kind: mutating, status: implemented}\n"
    )
    with pytest.raises(PayopsError, match="x:y: an implemented entry needs a playbook"):
        catalog.load(tmp_path / "runbook.yml")


def test_kinds_and_statuses_are_checked(tmp_path):
    (tmp_path / "runbook.yml").write_text(
        'commands:\n  - {command: "x:y", runbook: "npm run x:y", section: S, purpose: P,'
        " kind: harmless, status: planned}\n"
    )
    with pytest.raises(PayopsError, match="x:y: kind must be one of read-only, mutating, destructive"):
        catalog.load(tmp_path / "runbook.yml")


def test_find_accepts_the_runbook_spelling_and_suggests(cat):
    assert cat.find("npm run status:emergency").command == "status:emergency"
    assert cat.find("node scripts/production-deployment-validator.js").runbook.startswith("node ")
    with pytest.raises(PayopsError, match="did you mean payment:emergency-stop"):
        cat.find("payment:emergency-stp")


@pytest.mark.parametrize(
    ("kind", "raw", "expected"),
    [
        ("int", "42", 42),
        ("float", "0.5", 0.5),
        ("bool", "yes", True),
        ("bool", "False", False),
        ("list", "a, b", ["a", "b"]),
        ("list", '["a", "b"]', ["a", "b"]),
        ("ip_or_network_list", "10.0.0.1,192.168.0.0/16", ["10.0.0.1", "192.168.0.0/16"]),
        ("dict", '{"a": 1}', {"a": 1}),
    ],
)
def test_var_coercion(kind, raw, expected):
    assert catalog.VarSpec("v", type=kind).coerce(raw) == expected


@pytest.mark.parametrize(
    ("kind", "raw", "message"),
    [
        ("int", "many", "-e v='many': v must be an integer"),
        ("bool", "perhaps", "-e v='perhaps': v must be true or false"),
        ("ip_or_network_list", "10.0.0.1,not-an-address", "v must be addresses or networks"),
        ("dict", "[1]", "v must be a JSON object"),
    ],
)
def test_var_coercion_errors_name_the_variable(kind, raw, message):
    with pytest.raises(PayopsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        catalog.VarSpec("v", type=kind).coerce(raw)


def test_choices_are_enforced():
    with pytest.raises(PayopsError, match="v must be one of edge, app"):
        catalog.VarSpec("v", choices=("edge", "app")).coerce("kernel")


def test_docs_commands_md_shows_the_catalog_as_it_is(cat):
    """docs/commands.md's table is `payops list --markdown`: regenerate it when the catalog changes."""
    text = (ROOT / "docs" / "commands.md").read_text()
    begin, end = "<!-- payops list --markdown -->\n", "<!-- end -->\n"
    assert text[text.index(begin) + len(begin):text.index(end)] == catalog.markdown_table(cat)
