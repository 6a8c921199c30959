"""The sandbox's fixture releases of BetaSkill: built into a release store, published to S3, installed.

Sources are in payops/sandbox/releases/: one folder per release holding its release.json, the
shared app launcher (betaskill-app), the migrations by name (migrations/) and the frontend pages
(frontend/, index.html showing the version). Each release becomes, in <store>/<id>/:

    app.tar.gz       release.json, bin/betaskill-app, migrations/*.sql (the folder even when empty)
    frontend.tar.gz  release.json, index.html, 404.html, version.json ({"version": "<id>"})
    release.json     the same file as inside both tarballs
    SHA256SUMS       `sha256sum` lines for the three files above

The tarballs are reproducible (entries sorted, fixed mtime, uid/gid 0, gzip without a name or a
time), so their checksums are the same on every `payops sandbox up`; a file is rewritten only when
it is missing or differs. install() puts a release on a host's deploy root the way a deployment
leaves it: releases/<id>/ unpacked, the .payops-deployed marker, `current` -> releases/<id>.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import importlib.resources
import io
import json
import os
import shutil
import string
import tarfile
from datetime import UTC, datetime
from functools import cache
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

RELEASE_BUCKET = "betaskill-releases"
ARTEFACTS = ("app.tar.gz", "frontend.tar.gz", "release.json")
STORE_FILES = (*ARTEFACTS, "SHA256SUMS")
DEPLOYED_MARKER = ".payops-deployed"
TAR_MTIME = 1704067200  # 2024-01-01T00:00:00Z: any fixed time makes the tarballs reproducible
LAUNCHER = "bin/betaskill-app"


def sources() -> Traversable:
    return importlib.resources.files("payops.sandbox").joinpath("releases")


def version_key(release_id: str) -> tuple[int, ...]:
    return tuple(int(part) if part.isdigit() else 0 for part in release_id.split("."))


@cache
def fixture_ids() -> tuple[str, ...]:
    """The fixture releases, oldest first: ("1.0.0", "1.1.0", "1.2.0")."""
    ids = [item.name for item in sources().iterdir()
           if item.is_dir() and item.joinpath("release.json").is_file()]
    return tuple(sorted(ids, key=version_key))


def release_metadata(release_id: str) -> tuple[dict[str, Any], bytes]:
    """release.json of a fixture release, parsed and as its bytes; checked against its sources."""
    data = sources().joinpath(release_id, "release.json").read_bytes()
    release = json.loads(data)
    if release.get("id") != release_id:
        raise ValueError(f"releases/{release_id}/release.json has id {release.get('id')!r}")
    for name in release.get("migrations") or []:
        if not sources().joinpath("migrations", name).is_file():
            raise ValueError(f"release {release_id} lists migration {name}, which releases/migrations/ lacks")
    return release, data


def tarball(files: dict[str, tuple[bytes, int]], folders: tuple[str, ...] = ()) -> bytes:
    """A reproducible .tar.gz of {name: (data, mode)} and the (empty or not) folders."""
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name in sorted(set(files) | set(folders)):
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = TAR_MTIME, 0, 0, "root", "root"
            if name in files:
                data, mode = files[name]
                info.size, info.mode = len(data), mode
                archive.addfile(info, io.BytesIO(data))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                archive.addfile(info)
    return raw.getvalue()


def build(release_id: str) -> dict[str, bytes]:
    """The store's four files of one fixture release, as bytes."""
    release, release_json = release_metadata(release_id)
    version = str(release.get("version") or release_id)
    app_files = {
        "release.json": (release_json, 0o644),
        LAUNCHER: (sources().joinpath("betaskill-app").read_bytes(), 0o755),
    }
    for name in release.get("migrations") or []:
        app_files[f"migrations/{name}"] = (sources().joinpath("migrations", name).read_bytes(), 0o644)
    page = string.Template(sources().joinpath("frontend", "index.html").read_text()).substitute(version=version)
    frontend_files = {
        "release.json": (release_json, 0o644),
        "index.html": (page.encode(), 0o644),
        "404.html": (sources().joinpath("frontend", "404.html").read_bytes(), 0o644),
        "version.json": ((json.dumps({"version": version}) + "\n").encode(), 0o644),
    }
    built = {
        "app.tar.gz": tarball(app_files, ("bin", "migrations")),
        "frontend.tar.gz": tarball(frontend_files),
        "release.json": release_json,
    }
    built["SHA256SUMS"] = "".join(
        f"{hashlib.sha256(built[name]).hexdigest()}  {name}\n" for name in ARTEFACTS).encode()
    return built


def ensure_store(store: Path) -> list[str]:
    """Every fixture release in the store; returns the files (<id>/<name>) written this time."""
    written = []
    for release_id in fixture_ids():
        folder = store / release_id
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in build(release_id).items():
            path = folder / name
            try:
                same = path.read_bytes() == data
            except OSError:
                same = False
            if not same:
                tmp = folder / f".{name}.{os.getpid()}.tmp"
                tmp.write_bytes(data)
                os.replace(tmp, path)
                written.append(f"{release_id}/{name}")
    return written


def publish(client: Any, store: Path, bucket: str = RELEASE_BUCKET) -> int:
    """Upload the store to bucket as releases/<id>/<file>; only what is missing or differs (by MD5,
    moto's ETag of a single-part upload). Returns how many objects were uploaded."""
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    stored: dict[str, str] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="releases/"):
        for item in page.get("Contents", []):
            stored[item["Key"]] = item["ETag"].strip('"')
    uploaded = 0
    for release_id in fixture_ids():
        for name in STORE_FILES:
            data = (store / release_id / name).read_bytes()
            key = f"releases/{release_id}/{name}"
            if stored.get(key) != hashlib.md5(data, usedforsecurity=False).hexdigest():
                client.put_object(Bucket=bucket, Key=key, Body=data)
                uploaded += 1
    return uploaded


def install(root: Path, release_id: str, tarball_path: Path, config_link: Path | None = None) -> bool:
    """Install a release on a deploy root that has none yet, as a deployment leaves it: unpacked
    into root/releases/<id>/, config.json -> config_link (the app), the .payops-deployed marker,
    then `current` -> releases/<id> (relative) in one rename. An existing `current` (even a broken
    symlink) is the deployments': nothing is done and False returned."""
    current = root / "current"
    (root / "releases").mkdir(parents=True, exist_ok=True)
    (root / "shared").mkdir(exist_ok=True)
    if os.path.lexists(current):
        return False
    target = root / "releases" / release_id
    unpacking = root / "releases" / f".{release_id}.payops-unpack-{os.getpid()}"
    shutil.rmtree(unpacking, ignore_errors=True)
    unpacking.mkdir()
    with tarfile.open(tarball_path, "r:gz") as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(unpacking, filter="data")
        else:  # Python before 3.11.4: our own tarball, from our own store
            archive.extractall(unpacking)  # noqa: S202
    if config_link is not None:
        os.symlink(config_link, unpacking / "config.json")
    (unpacking / DEPLOYED_MARKER).write_text(datetime.now(UTC).isoformat(timespec="seconds") + "\n")
    if os.path.lexists(target):  # left by an earlier install that lost its `current`
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
    os.rename(unpacking, target)
    link = root / f".current.payops-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    os.symlink(f"releases/{release_id}", link)
    os.replace(link, current)
    return True
