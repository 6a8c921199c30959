"""Evidence packs without a bucket (plugins/module_utils/payops_evidence.py): deterministic bytes,
masking written in the manifest, and verification that finds one changed byte, a missing or extra
file and a manifest that differs from the one kept beside the pack."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest
from ansible_collections.betaskill.payops.plugins.module_utils.payops_evidence import (
    CUSTODY,
    MANIFEST,
    build_pack,
    safe_name,
    sha256,
    verify_pack,
)

FILES = [
    {"name": "logs/app-1.jsonl", "content": '{"text":"charge failed for card 4111 1111 1111 1111"}\n',
     "description": "the app's lines"},
    {"name": "config/app-1/config.json", "content": '{"dsn":"postgresql://app:pw123456@db/app","port":8000}\n'},
    {"name": "database/security_events.json", "content": '[{"email":"jane@example.com"}]\n'},
]
CUSTODY_RECORD = {"collected_by": "jane", "collected_from": "controller-1", "reason": "INC-4711"}


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {info.name: tar.extractfile(info).read() for info in tar.getmembers()}


def repack(contents: dict[str, bytes]) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, data in contents.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue())


@pytest.fixture(scope="module")
def pack():
    return build_pack(FILES, CUSTODY_RECORD, 1796301952)


def test_the_same_contents_give_the_same_bytes(pack):
    again, _ = build_pack(list(reversed(FILES)), CUSTODY_RECORD, 1796301952)
    assert again == pack[0]


def test_every_file_is_masked_and_the_manifest_says_what_and_why(pack):
    data, manifest = pack
    inside = members(data)
    assert set(inside) == {MANIFEST, CUSTODY, *(item["name"] for item in FILES)}
    everything = b"".join(inside.values())
    for secret in (b"4111 1111 1111 1111", b"pw123456", b"jane@example.com"):
        assert secret not in everything
    by_name = {entry["name"]: entry for entry in manifest["files"]}
    assert by_name["logs/app-1.jsonl"]["masked"]["card"] == 1
    assert by_name["config/app-1/config.json"]["masked"]["secret"] == 1
    assert by_name["database/security_events.json"]["masked"]["email"] == 1
    assert manifest["masking"]["masked"] == {"card": 1, "secret": 1, "email": 1}
    assert "PCI DSS" in manifest["masking"]["policy"]["card"]
    for name, entry in by_name.items():
        assert entry["sha256"] == sha256(inside[name]) and entry["bytes"] == len(inside[name])
    assert json.loads(inside[CUSTODY]) == CUSTODY_RECORD
    assert json.loads(inside[MANIFEST]) == manifest


def test_a_pack_verifies_against_its_manifest(pack):
    data, manifest = pack
    assert verify_pack(data, sha256(data), manifest) == []


def test_one_changed_byte_is_found(pack):
    data, manifest = pack
    inside = members(data)
    changed = bytearray(inside["logs/app-1.jsonl"])
    changed[5] ^= 0x01
    tampered = repack({**inside, "logs/app-1.jsonl": bytes(changed)})
    problems = verify_pack(tampered, sha256(data), manifest)
    assert any(problem.startswith("the pack's SHA-256 is") for problem in problems)
    assert any(problem.startswith("logs/app-1.jsonl has SHA-256") for problem in problems)
    # Even without the recorded SHA-256, the manifest inside catches it.
    assert verify_pack(tampered) == [problem for problem in problems if problem.startswith("logs/")]


def test_one_changed_byte_of_the_archive_itself_is_found(pack):
    data, manifest = pack
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0x01
    problems = verify_pack(bytes(flipped), sha256(data), manifest)
    assert problems and problems[0].startswith("the pack's SHA-256 is")


def test_missing_extra_files_and_a_rewritten_manifest_are_found(pack):
    data, manifest = pack
    inside = members(data)
    without = {name: body for name, body in inside.items() if name != "config/app-1/config.json"}
    assert "config/app-1/config.json is listed in the manifest but missing from the pack" in verify_pack(
        repack(without))
    extra = {**inside, "notes.txt": b"added later"}
    assert "notes.txt is in the pack but not in the manifest" in verify_pack(repack(extra))
    # A consistent forgery (file and manifest inside both changed) differs from the manifest kept beside.
    forged_manifest = json.loads(inside[MANIFEST])
    forged_manifest["files"][0]["sha256"] = "0" * 64
    forged = repack({**inside, MANIFEST: json.dumps(forged_manifest).encode()})
    assert "the manifest.json inside differs from the one kept beside the pack" in verify_pack(forged, None, manifest)


def test_names_must_stay_inside_the_pack():
    assert safe_name("./logs//web-1.jsonl") == "logs/web-1.jsonl"
    for name in ("../etc/passwd", "", MANIFEST, CUSTODY, f"./{MANIFEST}", f"/{CUSTODY}", "a/../../b"):
        with pytest.raises(ValueError):
            safe_name(name)
    with pytest.raises(ValueError, match="twice"):
        build_pack([{"name": "a", "content": "1"}, {"name": "./a", "content": "2"}], {}, 0)


def test_the_custody_record_is_masked_like_every_file():
    _, manifest = build_pack(FILES, {**CUSTODY_RECORD, "reason": "card 4111 1111 1111 1111 from jane@example.com"}, 0)
    data, _ = build_pack(FILES, {**CUSTODY_RECORD, "reason": "card 4111 1111 1111 1111 from jane@example.com"}, 0)
    custody = members(data)[CUSTODY].decode()
    assert "4111 1111 1111 1111" not in custody and "jane@example.com" not in custody
    assert "411111******1111" in custody and manifest["custody"]["sha256"] == sha256(members(data)[CUSTODY])
