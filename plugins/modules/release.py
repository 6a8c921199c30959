#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release
short_description: Unpack a release into releases/<id> on a host, or switch current to it, in one step
description:
  - One component's deploy folder (O(path)) laid out as the deploy role keeps it, the way
    ansistrano and M(community.general.deploy_helper) do - C(releases/<id>/), C(shared/), a
    C(current) symlink switched atomically and a C(previous) symlink. Markers in a release folder
    say what it is - C(.payops-unfinished) (unpacked, never switched to), C(.payops-deployed) (when
    it was last switched to) and C(.payops-failed) (why it went back); M(betaskill.payops.release_prune)
    reads the same markers.
  - The steps of a host that belong together run in order in one module process, as
    M(community.general.deploy_helper) does for releases, instead of one task (and one module
    process) each.
  - O(state=unpacked) - look at the release's folder and its markers; a release deployed before
    (marked deployed, neither unfinished nor failed) is reused as it is; an unfinished or failed
    copy is removed; check that every shared file of O(shared_links) exists (before anything is
    changed); make the folder, mark it unfinished, unpack O(src) into it as a stream (every member
    must stay inside the folder; no device files); link the shared files into it. Nothing here
    changes what the host serves.
  - O(state=current) - when C(current) does not point at the release already, write the deployed
    marker, switch C(current) atomically (a new symlink renamed over it), remove the unfinished
    marker and keep the release C(current) pointed at before as C(previous). Returns that release
    (RV(previous_release)) and what C(previous) pointed at before (RV(replaced_previous)), so that
    going back can put both links back.
  - Idempotent - an unpacked release already there and good is not touched, a C(current) already
    pointing at the release is not switched.
  - Check mode looks at the folder and reports what would change (with a diff of C(current)), and
    changes nothing.
  - The action half of this module copies O(src) from the controller to the host first (unless the
    connection is local, where the controller's file is the host's); with O(remote_src=true) O(src)
    is already on the host.
author: payops contributors (!UNKNOWN)
options:
  path:
    description: The component's deploy folder, holding C(releases/), C(shared/), C(current) and C(previous).
    type: path
    required: true
  release:
    description: The release id, one folder name (letters, digits, C(.), C(_), C(-); at most 64; no C(..)).
    type: str
    required: true
  state:
    description:
      - C(unpacked) - the release is in C(releases/<id>) with its shared links.
      - C(current) - C(current) points at it.
    type: str
    required: true
    choices: [unpacked, current]
  src:
    description:
      - The release's artefact, a C(.tar.gz) (or an uncompressed tar), on the controller (on the host
        with O(remote_src)).
      - Required with O(state=unpacked).
    type: path
  remote_src:
    description: O(src) is on the host already.
    type: bool
    default: false
  shared_links:
    description: Files of C(shared/) linked into the release (O(state=unpacked)).
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: The link's path inside the release.
        type: str
        required: true
      shared:
        description: The file's path inside C(shared/).
        type: str
        required: true
  unfinished_note:
    description: What the unfinished marker says (which run unpacked the release).
    type: str
    default: unpacked by ansible-playbook
notes:
  - Releases are never unpacked over a good one - a redeployment reuses it; an unfinished or failed
    copy is removed and unpacked afresh.
seealso:
  - module: betaskill.payops.release_prune
  - module: community.general.deploy_helper
"""

EXAMPLES = r"""
- name: Unpack release 1.1.0 of the app, marked unfinished, with its shared configuration linked
  betaskill.payops.release:
    path: /srv/betaskill/app
    release: 1.1.0
    state: unpacked
    src: "{{ deploy_artefacts.app }}"
    shared_links:
      - {path: config.json, shared: config.json}

- name: Switch current to it; previous keeps the release current pointed at
  betaskill.payops.release:
    path: /srv/betaskill/app
    release: 1.1.0
    state: current
  register: switch_result
"""

RETURN = r"""
path:
  description: The release's folder.
  returned: always
  type: str
  sample: /srv/betaskill/app/releases/1.1.0
markers:
  description: The markers the release's folder carried before this step (O(state=unpacked)), by name.
  returned: always
  type: list
  elements: str
  sample: [.payops-deployed]
reused:
  description: The release was there, deployed before and good, and was kept as it was (O(state=unpacked)).
  returned: always
  type: bool
  sample: false
removed:
  description:
    - Why a copy of the release already there was removed first (C(unfinished), C(failed),
      C(unmarked)), or null.
  returned: always
  type: str
  sample: unfinished
unpacked:
  description: How many members of the archive were unpacked (0 when reused, or in check mode).
  returned: always
  type: int
  sample: 42
links:
  description: The shared links made or changed, by their path inside the release.
  returned: always
  type: list
  elements: str
  sample: [config.json]
switched:
  description: Whether C(current) was switched (or would be, in check mode) (O(state=current)).
  returned: always
  type: bool
  sample: true
previous_release:
  description:
    - The release C(current) pointed at before this step (an empty string when there was none).
      Equal to O(release) when it pointed there already.
  returned: always
  type: str
  sample: 1.0.0
replaced_previous:
  description:
    - The target of the C(previous) symlink before the switch (C(releases/<id>)), an empty string when
      there was none. Going back from a failed switch puts it back.
  returned: always
  type: str
  sample: releases/0.9.0
"""

import datetime
import os
import shutil
import tarfile
import tempfile

from ansible.module_utils.basic import AnsibleModule

MARKER_UNFINISHED = ".payops-unfinished"
MARKER_DEPLOYED = ".payops-deployed"
MARKER_FAILED = ".payops-failed"
MARKERS = (MARKER_UNFINISHED, MARKER_DEPLOYED, MARKER_FAILED)


class ReleaseError(Exception):
    """An operator-facing failure: its message names what is wrong."""


def valid_release(release):
    if not release or len(release) > 64 or ".." in release or release[0] in ".-":
        return False
    return all(char.isascii() and (char.isalnum() or char in "._-") for char in release)


def link_target(path):
    """The symlink's target as written, or None when path is not a symlink."""
    try:
        return os.readlink(path)
    except OSError:
        return None


def release_of(target):
    return os.path.basename(os.path.normpath(target)) if target else ""


def markers(folder):
    try:
        return sorted(name for name in os.listdir(folder) if name in MARKERS)
    except (FileNotFoundError, NotADirectoryError):
        return []


def now_marker():
    # datetime.UTC is Python 3.11+; a host may run an older Python.
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ") + "\n"  # noqa: UP017


def write_file(path, content, mode=0o644):
    """Atomically: a temporary file beside it, renamed over it."""
    descriptor, temporary = tempfile.mkstemp(prefix=".payops-tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    finally:
        if os.path.lexists(temporary):
            os.unlink(temporary)


def symlink(target, path):
    """Point path at target atomically (a new symlink renamed over the old one); True when it changed."""
    if link_target(path) == target:
        return False
    if os.path.isdir(path) and not os.path.islink(path):
        raise ReleaseError(f"{path} is a folder, not a symlink: payops does not replace it")
    temporary = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.payops-{os.getpid()}")
    if os.path.lexists(temporary):
        os.unlink(temporary)
    os.symlink(target, temporary)
    os.replace(temporary, path)
    return True


def _inside(root, name):
    resolved = os.path.normpath(os.path.join(root, name))
    return resolved == root or resolved.startswith(root + os.sep)


def safe_member(member, root):
    """The member as it may be unpacked under root, or a ReleaseError: what tarfile's data filter refuses."""
    if os.path.isabs(member.name) or not _inside(root, member.name):
        raise ReleaseError(f"archive member {member.name!r} would land outside the release's folder")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise ReleaseError(f"archive member {member.name!r} is a device or fifo: a release holds files only")
    linked = os.path.join(os.path.dirname(member.name), member.linkname)
    if member.issym() and (os.path.isabs(member.linkname) or not _inside(root, linked)):
        raise ReleaseError(f"archive member {member.name!r} links outside the release's folder")
    if member.islnk() and (os.path.isabs(member.linkname) or not _inside(root, member.linkname)):
        raise ReleaseError(f"archive member {member.name!r} links outside the release's folder")
    return member


def unpack(src, folder):
    """Unpack the tar at src into folder as a stream (one pass, no listing first); the member count."""
    count = 0
    root = os.path.normpath(os.path.abspath(folder))
    data_filter = getattr(tarfile, "data_filter", None)
    try:
        with tarfile.open(src, mode="r|*") as archive:
            for member in archive:
                member = safe_member(member, root)
                if data_filter is not None:
                    archive.extract(member, root, filter="data")
                else:  # a Python without PEP 706 (older than 3.8.17/3.9.17/3.10.12/3.11.4): checked above
                    archive.extract(member, root, set_attrs=True)
                count += 1
    except (tarfile.TarError, OSError) as exc:
        raise ReleaseError(f"cannot unpack {src}: {exc}") from exc
    return count


def unpacked(params, check_mode):
    base, release = params["path"], params["release"]
    folder = os.path.join(base, "releases", release)
    result = dict(changed=False, path=folder, reused=False, removed=None, unpacked=0, links=[],
                  switched=False, previous_release="", replaced_previous="")
    present = os.path.isdir(folder) and not os.path.islink(folder)
    found = markers(folder) if present else []
    result["markers"] = found
    reuse = present and MARKER_DEPLOYED in found and MARKER_UNFINISHED not in found and MARKER_FAILED not in found
    result["reused"] = reuse

    # The shared files first: a release that cannot be linked is refused before anything changes.
    shared = os.path.join(base, "shared")
    missing = [link["shared"] for link in params["shared_links"]
               if not os.path.exists(os.path.join(shared, link["shared"]))]
    if missing:
        raise ReleaseError(f"{', '.join(missing)} missing in {shared}: release {release} links it into its folder")
    for link in params["shared_links"]:
        if not _inside(os.path.normpath(folder), link["path"]) or os.path.isabs(link["path"]):
            raise ReleaseError(f"shared link path {link['path']!r} would land outside the release's folder")

    serving = os.path.realpath(os.path.join(base, "current"))
    if present and not reuse and serving == os.path.realpath(folder):
        raise ReleaseError(f"{folder} is the release current serves, but it is marked "
                           f"{', '.join(found) or 'with nothing'}: payops does not remove a release in service; "
                           "deploy another release, or go back with deploy:rollback")
    if not reuse:
        result["changed"] = True
        if present:
            result["removed"] = ("failed" if MARKER_FAILED in found else "unfinished" if MARKER_UNFINISHED in found
                                 else "unmarked")
        if not params["src"]:
            raise ReleaseError("src is required to unpack a release that is not on the host yet")
        if not os.path.isfile(params["src"]):
            raise ReleaseError(f"the release's artefact {params['src']} is not there")
        if check_mode:
            result["links"] = [link["path"] for link in params["shared_links"]]
            return result
        if present:
            shutil.rmtree(folder)
        os.makedirs(os.path.join(base, "releases"), exist_ok=True)
        os.mkdir(folder, 0o755)
        os.chmod(folder, 0o755)  # noqa: S103 - a release folder is read by the service user, as unarchive left it
        write_file(os.path.join(folder, MARKER_UNFINISHED), params["unfinished_note"].rstrip("\n") + "\n")
        try:
            result["unpacked"] = unpack(params["src"], folder)
        except ReleaseError:
            shutil.rmtree(folder, ignore_errors=True)  # nothing half-unpacked is left behind
            raise

    for link in params["shared_links"]:
        target, where = os.path.join(shared, link["shared"]), os.path.join(folder, link["path"])
        if link_target(where) == target:
            continue
        result["links"].append(link["path"])
        result["changed"] = True
        if not check_mode:
            os.makedirs(os.path.dirname(where), exist_ok=True)
            symlink(target, where)
    return result


def current(params, check_mode):
    base, release = params["path"], params["release"]
    folder = os.path.join(base, "releases", release)
    current_link, previous_link = os.path.join(base, "current"), os.path.join(base, "previous")
    before = link_target(current_link)
    previous_release = release_of(before)
    replaced = link_target(previous_link) or ""
    result = dict(changed=False, path=folder, markers=markers(folder), reused=False, removed=None, unpacked=0,
                  links=[], switched=False, previous_release=previous_release, replaced_previous=replaced)
    if previous_release == release:
        return result
    if os.path.lexists(current_link) and before is None:
        raise ReleaseError(f"{current_link} is not a symlink: payops does not replace it")
    result.update(changed=True, switched=True)
    result["diff"] = dict(before=f"current -> {before or '(none)'}\n", after=f"current -> releases/{release}\n",
                          before_header=current_link, after_header=current_link)
    if check_mode:
        return result
    if not os.path.isdir(folder):
        raise ReleaseError(f"release {release} is not unpacked in {os.path.join(base, 'releases')}: "
                           "unpack it first (state=unpacked)")
    write_file(os.path.join(folder, MARKER_DEPLOYED), now_marker())
    # No longer unfinished before current points at it: a run stopped in between leaves a complete
    # release that a redeployment reuses, never a live folder that looks unfinished (and would be
    # removed and unpacked again under the traffic it serves).
    unfinished = os.path.join(folder, MARKER_UNFINISHED)
    if os.path.lexists(unfinished):
        os.unlink(unfinished)
    symlink(f"releases/{release}", current_link)
    if previous_release:
        symlink(f"releases/{previous_release}", previous_link)
    return result


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            release=dict(type="str", required=True),
            state=dict(type="str", required=True, choices=["unpacked", "current"]),
            src=dict(type="path"),
            remote_src=dict(type="bool", default=False),
            shared_links=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="str", required=True),
                shared=dict(type="str", required=True),
            )),
            unfinished_note=dict(type="str", default="unpacked by ansible-playbook"),
        ),
        required_if=[("state", "unpacked", ("src",))],
        supports_check_mode=True,
    )
    params = module.params
    if not valid_release(params["release"]):
        module.fail_json(msg=f"release={params['release']!r} is not a safe release id: use 1 to 64 letters, "
                             "digits, '.', '_' or '-', starting with a letter or digit, without '..'")
    try:
        if params["state"] == "unpacked":
            result = unpacked(params, module.check_mode)
        else:
            result = current(params, module.check_mode)
    except ReleaseError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"release {params['release']} in {params['path']}: {exc}")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
