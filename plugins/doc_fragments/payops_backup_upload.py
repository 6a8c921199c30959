# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of plugins/module_utils/payops_backup_stream.py:upload_argument_spec().
    DOCUMENTATION = r"""
options:
  compression_threads:
    description: zstd's worker threads; 0 is one per core.
    type: int
    default: 0
  part_size_mb:
    description: Size of each multipart part (5 to 5120).
    type: int
    default: 16
  sse:
    description: Server-side encryption of the objects.
    type: str
    choices: [AES256, "aws:kms", none]
    default: AES256
  sse_kms_key_id:
    description: The KMS key for O(sse=aws:kms).
    type: str
  run_id:
    description: The run that made the backup, kept in the manifest.
    type: str
  operator:
    description: Who made the backup, kept in the manifest.
    type: str
"""
