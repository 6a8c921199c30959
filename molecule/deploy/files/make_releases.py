#!/usr/bin/env python3
"""Write the deploy scenario's fixture releases into a release store, as the build publishes them.

    make_releases.py STORE

STORE/<id>/ gets release.json, app.tar.gz, frontend.tar.gz and SHA256SUMS for three releases:
A (the first), B (adds a migration) and C (its app answers 503: misconfigured). The archives are
byte-for-byte the same on every run (fixed times and owners), so their checksums are stable.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import sys
import tarfile
from pathlib import Path

RELEASES = ("2026.11.27-a", "2026.11.27-b", "2026.11.27-c")
A, B, C = RELEASES
MIGRATION = ("0001_course_reviews.sql",
             "CREATE TABLE public.course_reviews (id bigserial PRIMARY KEY, course_id bigint NOT NULL,"
             " rating smallint NOT NULL CHECK (rating BETWEEN 1 AND 5), created_at timestamptz NOT NULL"
             " DEFAULT now());\n")
# What release C's app says is wrong with it; the scenario looks for it in the deployment's output.
C_PROBLEM = "release C needs setting search_url"

# The app: standard library only. systemd passes the listening socket as fd 3 (socket activation);
# GET /api/health reports the release's version; SIGTERM ends it cleanly.
APP = r'''#!/usr/bin/python3
"""BetaSkill app stand-in for payops' deploy scenario (release @ID@)."""
import json
import os
import signal
import socket
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RELEASE = json.loads((Path(__file__).resolve().parent.parent / "release.json").read_text())
PROBLEM = @PROBLEM@


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        if self.path != "/api/health":
            self.answer(404, {"error": "not found"})
        elif PROBLEM:
            self.answer(503, {"status": "misconfigured", "version": RELEASE["version"],
                              "checks": {"configuration": PROBLEM}})
        else:
            self.answer(200, {"status": "ok", "version": RELEASE["version"]})

    def answer(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def main():
    if os.environ.get("LISTEN_FDS") != "1":
        sys.exit("betaskill-app: expects one socket from systemd (LISTEN_FDS=1, fd 3)")
    listener = socket.socket(fileno=3)
    server = ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = listener
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
'''


def tar_gz(files: dict[str, tuple[bytes, int]]) -> bytes:
    """A gzip'd tar of {path: (content, mode)} with its folders, the same bytes every time."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        folders = sorted({str(parent) for path in files for parent in Path(path).parents if str(parent) != "."})
        for name in folders:
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for name in sorted(files):
            content, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return gzip.compress(raw.getvalue(), mtime=0)


def release(store: Path, release_id: str) -> None:
    migrations = [MIGRATION] if release_id != A else []
    info = json.dumps({"id": release_id, "version": release_id, "maintenance": False,
                       "migrations": [name for name, _ in migrations]}, indent=2).encode() + b"\n"
    app = APP.replace("@ID@", release_id).replace("@PROBLEM@", repr(C_PROBLEM if release_id == C else ""))
    artefacts = {
        "release.json": info,
        "app.tar.gz": tar_gz({
            "release.json": (info, 0o644),
            "bin/betaskill-app": (app.encode(), 0o755),
            "migrations/.keep": (b"", 0o644),
            **{f"migrations/{name}": (sql.encode(), 0o644) for name, sql in migrations},
        }),
        "frontend.tar.gz": tar_gz({
            "index.html": (f"<!DOCTYPE html><title>BetaSkill</title><p>release {release_id}</p>\n".encode(), 0o644),
            "version.json": (json.dumps({"version": release_id}).encode() + b"\n", 0o644),
        }),
    }
    folder = store / release_id
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in artefacts.items():
        (folder / name).write_bytes(content)
    sums = "".join(f"{hashlib.sha256(content).hexdigest()}  {name}\n" for name, content in artefacts.items())
    (folder / "SHA256SUMS").write_text(sums)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for release_id in RELEASES:
        release(Path(sys.argv[1]), release_id)


if __name__ == "__main__":
    main()
