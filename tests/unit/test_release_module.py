"""betaskill.payops.release (the host half: unpack, switch) run as Ansible runs a module, its arguments
as JSON, on deploy folders in tmp dirs with real tar files; and the checksum comparison of
betaskill.payops.release_checksums. The whole deployment against the sandbox is
tests/integration/test_deploy.py; on real hosts, molecule/deploy.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from ansible_collections.betaskill.payops.plugins.action.release_checksums import check, mismatch, published, sha256

ROOT = Path(__file__).resolve().parents[2]
MODULE = ROOT / "plugins" / "modules" / "release.py"


def run_module(tmp_path: Path, check_mode: bool = False, **args) -> dict:
    arguments = tmp_path / "args.json"
    arguments.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, "_ansible_check_mode": check_mode}}))
    completed = subprocess.run([sys.executable, str(MODULE), str(arguments)], capture_output=True, text=True,
                               timeout=60, check=False)
    return json.loads(completed.stdout)


def make_tar(path: Path, files: dict[str, str], extra: list[tarfile.TarInfo] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as archive:
        for name, content in files.items():
            data = content.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            archive.addfile(info, io.BytesIO(data))
        for info in extra or []:
            archive.addfile(info)
    return path


@pytest.fixture
def base(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    (folder / "releases").mkdir(parents=True)
    (folder / "shared").mkdir()
    (folder / "shared" / "config.json").write_text("{}")
    return folder


@pytest.fixture
def artefact(tmp_path: Path) -> Path:
    return make_tar(tmp_path / "app.tar.gz", {"release.json": '{"version": "1.1.0"}', "bin/app": "#!/bin/sh\n"})


LINKS = [{"path": "config.json", "shared": "config.json"}]


def unpack(tmp_path, base, artefact, release="1.1.0", **extra):
    return run_module(tmp_path, path=str(base), release=release, state="unpacked", src=str(artefact),
                      shared_links=LINKS, unfinished_note="run-42", **extra)


def switch(tmp_path, base, release="1.1.0", **extra):
    return run_module(tmp_path, path=str(base), release=release, state="current", **extra)


def markers(folder: Path) -> set[str]:
    return {item.name for item in folder.glob(".payops-*")}


def test_unpack_marks_unfinished_unpacks_and_links_the_shared_files(tmp_path, base, artefact):
    result = unpack(tmp_path, base, artefact)
    assert result["changed"] and not result.get("failed") and not result["reused"], result
    folder = base / "releases" / "1.1.0"
    assert (folder / "release.json").read_text() == '{"version": "1.1.0"}'
    assert (folder / "bin" / "app").read_text() == "#!/bin/sh\n"
    assert markers(folder) == {".payops-unfinished"}
    assert (folder / ".payops-unfinished").read_text() == "run-42\n"
    assert os.readlink(folder / "config.json") == str(base / "shared" / "config.json")
    assert result["unpacked"] == 2 and result["links"] == ["config.json"]
    assert not (base / "current").exists()  # unpacking changes nothing the host serves


def test_a_release_deployed_before_is_reused_as_it_is(tmp_path, base, artefact):
    unpack(tmp_path, base, artefact)
    switch(tmp_path, base)
    folder = base / "releases" / "1.1.0"
    (folder / "local-note").write_text("kept")
    again = unpack(tmp_path, base, artefact)
    assert not again["changed"] and again["reused"] and again["unpacked"] == 0, again
    assert (folder / "local-note").read_text() == "kept"
    assert markers(folder) == {".payops-deployed"}


@pytest.mark.parametrize("marker,why", [(".payops-unfinished", "unfinished"), (".payops-failed", "failed")])
def test_an_unfinished_or_failed_copy_is_removed_and_unpacked_afresh(tmp_path, base, artefact, marker, why):
    folder = base / "releases" / "1.1.0"
    folder.mkdir()
    (folder / ".payops-deployed").write_text("2026-01-01T00:00:00.000000Z\n")
    (folder / marker).write_text("half-way\n")
    (folder / "stale-file").write_text("from an interrupted run")
    result = unpack(tmp_path, base, artefact)
    assert result["changed"] and result["removed"] == why and not result["reused"], result
    assert not (folder / "stale-file").exists()
    assert markers(folder) == {".payops-unfinished"}
    assert (folder / "release.json").exists()


def test_the_release_in_service_is_never_removed_even_when_its_markers_say_unfinished(tmp_path, base, artefact):
    """A live folder that looks unfinished (a run stopped mid-switch by an older payops, or a hand
    edit) is refused, not removed and unpacked again under the traffic it serves."""
    unpack(tmp_path, base, artefact)
    switch(tmp_path, base)
    folder = base / "releases" / "1.1.0"
    assert markers(folder) == {".payops-deployed"}  # unfinished went before current pointed at it
    (folder / ".payops-unfinished").write_text("left by a stopped run\n")
    result = unpack(tmp_path, base, artefact)
    assert result.get("failed") and "is the release current serves" in result["msg"], result
    assert (folder / "release.json").exists() and os.readlink(base / "current") == "releases/1.1.0"


def test_a_missing_shared_file_is_refused_before_anything_changes(tmp_path, base, artefact):
    (base / "shared" / "config.json").unlink()
    result = unpack(tmp_path, base, artefact)
    assert result.get("failed"), result
    assert result["msg"] == f"config.json missing in {base / 'shared'}: release 1.1.0 links it into its folder"
    assert list((base / "releases").iterdir()) == []


def test_check_mode_reports_the_unpack_and_changes_nothing(tmp_path, base, artefact):
    result = unpack(tmp_path, base, artefact, check_mode=True)
    assert result["changed"] and not result.get("failed"), result
    assert list((base / "releases").iterdir()) == []


@pytest.mark.parametrize("name,kind,linkname", [
    ("../escape", tarfile.REGTYPE, ""),
    ("/etc/escape", tarfile.REGTYPE, ""),
    ("link", tarfile.SYMTYPE, "../../shared/config.json"),
    ("link", tarfile.SYMTYPE, "/etc/passwd"),
    ("dev", tarfile.CHRTYPE, ""),
])
def test_an_archive_member_outside_the_folder_or_a_device_is_refused(tmp_path, base, name, kind, linkname):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    bad = make_tar(tmp_path / "bad.tar.gz", {"index.html": "ok"}, [info])
    result = unpack(tmp_path, base, bad)
    assert result.get("failed") and ("outside" in result["msg"] or "device" in result["msg"]), result
    assert not (tmp_path / "escape").exists() and not Path("/etc/escape").exists()
    assert list((base / "releases").iterdir()) == []  # the half-unpacked folder is not left behind


def test_the_switch_marks_deployed_switches_current_and_keeps_previous(tmp_path, base, artefact):
    unpack(tmp_path, base, artefact, release="1.0.0")
    first = switch(tmp_path, base, release="1.0.0")
    assert first["switched"] and first["previous_release"] == "" and first["replaced_previous"] == "", first
    assert not (base / "previous").exists()
    unpack(tmp_path, base, artefact)
    result = switch(tmp_path, base)
    assert result["changed"] and result["switched"] and result["previous_release"] == "1.0.0", result
    assert os.readlink(base / "current") == "releases/1.1.0"
    assert os.readlink(base / "previous") == "releases/1.0.0"
    folder = base / "releases" / "1.1.0"
    assert markers(folder) == {".payops-deployed"}
    assert (folder / ".payops-deployed").read_text().endswith("Z\n")
    assert result["diff"]["before"] == "current -> releases/1.0.0\n"
    assert [item.name for item in base.iterdir() if item.name.startswith(".")] == []  # no temporary link left

    unpack(tmp_path, base, artefact, release="1.2.0")
    third = switch(tmp_path, base, release="1.2.0")
    assert third["previous_release"] == "1.1.0" and third["replaced_previous"] == "releases/1.0.0", third
    assert os.readlink(base / "previous") == "releases/1.1.0"


def test_a_switch_to_the_current_release_changes_nothing(tmp_path, base, artefact):
    unpack(tmp_path, base, artefact)
    switch(tmp_path, base)
    stamp = (base / "releases" / "1.1.0" / ".payops-deployed").read_text()
    again = switch(tmp_path, base)
    assert not again["changed"] and not again["switched"] and again["previous_release"] == "1.1.0", again
    assert (base / "releases" / "1.1.0" / ".payops-deployed").read_text() == stamp


def test_check_mode_reports_the_switch_and_changes_nothing(tmp_path, base, artefact):
    unpack(tmp_path, base, artefact, release="1.0.0")
    switch(tmp_path, base, release="1.0.0")
    result = switch(tmp_path, base, check_mode=True)  # 1.1.0 is not even unpacked
    assert result["changed"] and result["switched"] and result["previous_release"] == "1.0.0", result
    assert os.readlink(base / "current") == "releases/1.0.0"
    assert not (base / "previous").exists()


def test_switching_to_a_release_that_is_not_unpacked_fails_and_keeps_current(tmp_path, base, artefact):
    unpack(tmp_path, base, artefact, release="1.0.0")
    switch(tmp_path, base, release="1.0.0")
    result = switch(tmp_path, base)
    assert result.get("failed") and "not unpacked" in result["msg"], result
    assert os.readlink(base / "current") == "releases/1.0.0"


@pytest.mark.parametrize("release", ["../x", ".hidden", "a/b", "-x", "x" * 65])
def test_an_unsafe_release_id_is_refused(tmp_path, base, artefact, release):
    result = unpack(tmp_path, base, artefact, release=release)
    assert result.get("failed") and "not a safe release id" in result["msg"], result
    assert list((base / "releases").iterdir()) == []


SUM_A = "a" * 64


def test_published_reads_text_and_binary_lines_and_only_the_exact_name():
    sums = f"{SUM_A.upper()}  app.tar.gz\n{'b' * 64} *frontend.tar.gz\n{'c' * 64}  app.tar.gz.old\n"
    assert published(sums, "app.tar.gz") == SUM_A
    assert published(sums, "frontend.tar.gz") == "b" * 64
    assert published(sums, "release.json") == ""


def test_mismatch_names_the_published_sum_then_the_pin():
    sums = f"{SUM_A}  app.tar.gz\n"
    assert mismatch("app.tar.gz", "1.1.0", SUM_A, sums, {}) == ""
    assert mismatch("app.tar.gz", "1.1.0", SUM_A, sums, {"app": SUM_A.upper()}) == ""
    assert mismatch("app.tar.gz", "1.1.0", "f" * 64, sums, {}) == (
        f"app.tar.gz of release 1.1.0 has SHA-256 {'f' * 64}, but SHA256SUMS says {SUM_A}")
    assert mismatch("app.tar.gz", "1.1.0", SUM_A, sums, {"app": "e" * 64}) == (
        f"app.tar.gz of release 1.1.0 has SHA-256 {SUM_A}, but release_sha256 pins {'e' * 64}")
    assert mismatch("release.json", "1.1.0", SUM_A, sums, {}).endswith("SHA256SUMS says nothing about it")


def test_check_computes_each_sha256_and_reports_missing_and_damaged_files(tmp_path):
    folder = tmp_path / "store" / "1.1.0"
    folder.mkdir(parents=True)
    (tmp_path / "store" / "1.0.0").mkdir()
    (folder / "release.json").write_text('{"id": "1.1.0"}')
    (folder / "app.tar.gz").write_bytes(b"app")
    good = sha256(folder / "release.json")
    (folder / "SHA256SUMS").write_text(f"{good}  release.json\n{SUM_A}  app.tar.gz\n")
    import hashlib
    assert good == hashlib.sha256(b'{"id": "1.1.0"}').hexdigest()
    files = ["release.json", "SHA256SUMS", "app.tar.gz", "frontend.tar.gz"]
    result = check(str(folder), files, {}, "1.1.0")
    assert result["exists"] and result["missing"] == ["frontend.tar.gz"]
    assert result["checksums"]["app.tar.gz"] == hashlib.sha256(b"app").hexdigest()
    assert result["mismatches"] == [f"app.tar.gz of release 1.1.0 has SHA-256 {hashlib.sha256(b'app').hexdigest()}"
                                    f", but SHA256SUMS says {SUM_A}"]
    absent = check(str(tmp_path / "store" / "9.9.9"), files, {}, "9.9.9")
    assert not absent["exists"] and absent["known"] == ["1.0.0", "1.1.0"] and absent["missing"] == files


@pytest.mark.filterwarnings("ignore:Python 3.14 will:DeprecationWarning")
def test_without_pep_706_the_same_members_are_refused_and_the_rest_unpacked(tmp_path, monkeypatch):
    """A host's Python without tarfile's data filter (Debian 12's 3.11.2): the module's own checks hold."""
    from ansible_collections.betaskill.payops.plugins.modules import release

    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    good = make_tar(tmp_path / "good.tar.gz", {"index.html": "ok", "assets/app.js": "js"})
    (tmp_path / "good").mkdir()
    assert release.unpack(str(good), str(tmp_path / "good")) == 2
    assert (tmp_path / "good" / "assets" / "app.js").read_text() == "js"
    info = tarfile.TarInfo("link")
    info.type, info.linkname = tarfile.SYMTYPE, "../../outside"
    (tmp_path / "bad").mkdir()
    with pytest.raises(release.ReleaseError, match="links outside"):
        release.unpack(str(make_tar(tmp_path / "bad.tar.gz", {}, [info])), str(tmp_path / "bad"))
    assert not (tmp_path / "bad" / "link").exists()
