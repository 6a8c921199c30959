"""Every module's and plugin's documentation renders: ansible-doc is part of the code (STYLE.md)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(f"betaskill.payops.{path.stem}" for path in (ROOT / "plugins" / "modules").glob("*.py"))


def ansible_doc(*args: str) -> dict:
    result = subprocess.run(
        [str(Path(sys.executable).with_name("ansible-doc")), "--json", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={"ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"), "PATH": str(Path(sys.executable).parent)},
    )
    assert result.returncode == 0, result.stderr
    assert "Unable to parse documentation" not in result.stderr, result.stderr
    return json.loads(result.stdout)


def test_every_module_documents_itself_fully():
    docs = ansible_doc("-t", "module", *MODULES)
    assert sorted(docs) == MODULES
    for name, doc in docs.items():
        assert doc["doc"].get("short_description"), name
        assert doc["doc"].get("options") is not None, name
        assert doc.get("examples"), f"{name} has no EXAMPLES"
        assert doc.get("return") is not None, f"{name} has no RETURN"
        for key, spec in (doc.get("return") or {}).items():
            assert {"description", "returned", "type"} <= set(spec), f"{name}: RETURN {key} is incomplete"


def test_the_audit_callback_documents_its_options():
    doc = ansible_doc("-t", "callback", "betaskill.payops.audit")["betaskill.payops.audit"]["doc"]
    for option in ("log_path", "postgres_dsn"):
        spec = doc["options"][option]
        assert spec.get("ini") and spec.get("env"), f"{option} lacks an ini or env entry"
