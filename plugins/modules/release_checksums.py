#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_checksums
short_description: On the controller, the SHA-256 of every file of a release, checked against SHA256SUMS and pins
description:
  - An action that runs in the controller's own process (no module process) - the release's files
    are on the controller, where the deployment verifies them before any host changes.
  - Looks for the release's folder O(dir) (and, when it is not there, lists the releases beside it
    for the error message), computes the SHA-256 of each of O(files) in one pass each, reads
    C(SHA256SUMS) in the folder, and compares every file but C(SHA256SUMS) with the checksum
    published there and with the operator's pin in O(pins) (keyed by the file's name without
    C(.tar.gz)).
  - Never fails for what it finds - it returns what is missing and what does not match, each
    mismatch as a sentence, for the caller to refuse the release with.
  - Changes nothing; check mode runs the same.
author: payops contributors (!UNKNOWN)
options:
  dir:
    description: The release's folder on the controller, C(<source>/<id>) or the S3 cache's.
    type: path
    required: true
  files:
    description: The file names the release must hold, C(SHA256SUMS) among them.
    type: list
    elements: str
    required: true
  pins:
    description: SHA-256 checksums the operator pins, by component (C(app) pins C(app.tar.gz)).
    type: dict
    default: {}
  release:
    description: The release id, for the sentences of RV(mismatches).
    type: str
    required: true
notes:
  - Runs on the controller whatever the host of the task.
"""

EXAMPLES = r"""
- name: Checksum the release's files
  betaskill.payops.release_checksums:
    dir: /srv/releases/1.1.0
    files: [release.json, SHA256SUMS, app.tar.gz, frontend.tar.gz]
    pins: {app: "b5864a7c0c0f0d1e8b3b8f1e4ad4e3f5d8b0c5f1a2a9e2c47e1d3f6b7a8c9d0e"}
    release: 1.1.0
  register: release_sums
"""

RETURN = r"""
exists:
  description: Whether O(dir) is a folder.
  returned: always
  type: bool
  sample: true
known:
  description: The releases (folders) beside O(dir), when O(dir) is not there (empty otherwise).
  returned: always
  type: list
  elements: str
  sample: ["1.0.0", "1.1.0"]
checksums:
  description: Each file's SHA-256 (lower-case hex), by name.
  returned: always
  type: dict
  sample: {app.tar.gz: "b5864a7c0c0f0d1e8b3b8f1e4ad4e3f5d8b0c5f1a2a9e2c47e1d3f6b7a8c9d0e"}
missing:
  description: The files of O(files) that are not in O(dir).
  returned: always
  type: list
  elements: str
  sample: [frontend.tar.gz]
mismatches:
  description: One sentence per file whose SHA-256 differs from C(SHA256SUMS) or from its pin.
  returned: always
  type: list
  elements: str
  sample: ["app.tar.gz of release 1.1.0 has SHA-256 3f..., but SHA256SUMS says b5..."]
"""
