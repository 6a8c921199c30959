# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A report's JSON file, the one copy: written atomically, readable by its owner's group only.

Standard library only: the action half of report_json writes it in the controller's own process,
and the module half (the same file on a host) does the same.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime


def document(title, rows, details):
    return {"title": title, "time": datetime.now(UTC).isoformat(), "rows": rows, "details": details}


def write_report(path, content, dir_mode=0o750, file_mode=0o640):
    """Write `content` (a JSON-able mapping) to `path`, creating its folder; returns the path."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=dir_mode, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".report-", suffix=".json", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=4, sort_keys=True, ensure_ascii=False, default=str)
            handle.write("\n")
        os.chmod(temporary, file_mode)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
