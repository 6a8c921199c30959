#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: release_prune
short_description: Keep a host's newest good releases and remove the rest
description:
  - Works on one component's deploy folder, C(<path>/releases/<id>) with C(<path>/current) (and
    C(<path>/previous)) symlinks, as the deploy role leaves it.
  - A release is C(good) when it carries the deploy marker C(.payops-deployed) (the time it was
    last switched to), C(unfinished) with C(.payops-unfinished) (unpacked, never switched to) and
    C(failed) with C(.payops-failed) (switched to, failed its health gate, rolled back).
  - Keeps the release C(current) points at, the one C(previous) points at, every release named in
    O(protect), and then the most recently deployed good releases until O(keep) good ones are
    kept. Order comes from the deploy markers, never from folder times.
  - Failed and unfinished releases never take one of the O(keep) slots and are removed (unless
    protected); a folder without any marker (not made by payops) is left alone and reported.
  - Check mode reports what would be removed and removes nothing.
author: payops contributors (!UNKNOWN)
options:
  path:
    description: The component's deploy folder (holding C(releases/) and C(current)).
    type: path
    required: true
  keep:
    description: How many good releases to keep, the current one included.
    type: int
    default: 5
  protect:
    description: Release ids never removed (the one being deployed).
    type: list
    elements: str
    default: []
"""

EXAMPLES = r"""
- name: Keep the five newest good releases
  betaskill.payops.release_prune:
    path: /srv/betaskill/app
    keep: 5
    protect: ["1.1.0"]
"""

RETURN = r"""
current:
  description: The release C(current) points at, or null.
  returned: always
  type: str
  sample: "1.1.0"
previous:
  description: The release C(previous) points at, or null.
  returned: always
  type: str
  sample: "1.0.0"
releases:
  description: Every release folder with its state, newest deployment first.
  returned: always
  type: list
  elements: dict
  sample: [{id: "1.1.0", state: good, deployed_at: "2026-11-27T10:15:00Z"}, {id: "1.2.0", state: failed}]
kept:
  description: The releases kept, with why.
  returned: always
  type: dict
  sample: {"1.1.0": current, "1.0.0": previous}
removed:
  description: The releases removed (or that would be, in check mode), with why.
  returned: always
  type: dict
  sample: {"1.2.0": failed, "0.9.0": beyond keep}
"""

import os
import shutil

from ansible.module_utils.basic import AnsibleModule

MARKERS = {"failed": ".payops-failed", "unfinished": ".payops-unfinished", "good": ".payops-deployed"}


def link_target(path):
    try:
        return os.path.basename(os.path.normpath(os.readlink(path)))
    except OSError:
        return None


def release_state(folder):
    for state in ("failed", "unfinished", "good"):
        if os.path.exists(os.path.join(folder, MARKERS[state])):
            deployed_at = None
            if state == "good":
                with open(os.path.join(folder, MARKERS["good"])) as handle:
                    deployed_at = handle.read().strip()
            return state, deployed_at
    return "unknown", None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            path=dict(type="path", required=True),
            keep=dict(type="int", default=5),
            protect=dict(type="list", elements="str", default=[]),
        ),
        supports_check_mode=True,
    )
    path, keep = module.params["path"], module.params["keep"]
    if keep < 1:
        module.fail_json(msg=f"keep_releases must be at least 1 (got {keep}): the current release is always kept")
    releases_dir = os.path.join(path, "releases")
    if not os.path.isdir(releases_dir):
        module.fail_json(msg=f"{releases_dir} does not exist: nothing was deployed to {path}")
    current = link_target(os.path.join(path, "current"))
    previous = link_target(os.path.join(path, "previous"))
    releases = []
    for name in os.listdir(releases_dir):
        folder = os.path.join(releases_dir, name)
        if os.path.isdir(folder) and not os.path.islink(folder):
            state, deployed_at = release_state(folder)
            releases.append({"id": name, "state": state, "deployed_at": deployed_at})
    releases.sort(key=lambda item: item["deployed_at"] or "", reverse=True)

    kept, removed = {}, {}
    for name, why in ((current, "current"), (previous, "previous")):
        if name and any(item["id"] == name for item in releases):
            kept.setdefault(name, why)
    for name in module.params["protect"]:
        if any(item["id"] == name for item in releases):
            kept.setdefault(name, "being deployed")
    good_kept = sum(1 for item in releases if item["id"] in kept and item["state"] == "good")
    for item in releases:
        name, state = item["id"], item["state"]
        if name in kept:
            continue
        if state in ("failed", "unfinished"):
            removed[name] = state
        elif state == "unknown":
            kept[name] = "not made by payops (no marker): left alone"
        elif good_kept < keep:
            kept[name] = "among the newest good"
            good_kept += 1
        else:
            removed[name] = f"beyond keep_releases={keep}"
    if not module.check_mode:
        for name in removed:
            try:
                shutil.rmtree(os.path.join(releases_dir, name))
            except OSError as exc:
                module.fail_json(msg=f"cannot remove release {name} under {releases_dir}: {exc}",
                                 kept=kept, removed=removed)
    module.exit_json(changed=bool(removed), current=current, previous=previous, releases=releases,
                     kept=kept, removed=removed,
                     msg=(f"{'would remove' if module.check_mode else 'removed'} {', '.join(sorted(removed))}"
                          if removed else "nothing to remove"))


if __name__ == "__main__":
    main()
