# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of plugins/module_utils/payops_s3.py:s3_argument_spec().
    DOCUMENTATION = r"""
options:
  bucket:
    description: The backup bucket.
    type: str
    required: true
  prefix:
    description: Key prefix of payops' backups; backups live under C(<prefix>/<environment>/<kind>/<backup id>/).
    type: str
    default: payops
  endpoint_url:
    description: S3 endpoint; empty for AWS. Default C(AWS_ENDPOINT_URL_S3) or C(AWS_ENDPOINT_URL).
    type: str
  region:
    description: The bucket's region. Default C(AWS_REGION) or C(AWS_DEFAULT_REGION).
    type: str
    default: us-east-1
  access_key:
    description: Access key id; empty uses boto3's own chain. Default C(AWS_ACCESS_KEY_ID). Never logged.
    type: str
  secret_key:
    description: Secret access key. Default C(AWS_SECRET_ACCESS_KEY). Never logged.
    type: str
  session_token:
    description: Session token of temporary credentials. Default C(AWS_SESSION_TOKEN). Never logged.
    type: str
  retries:
    description:
      - Attempts per S3 call on transient failures (connection errors, throttling, 5xx), with
        jittered exponential backoff; other errors are not retried.
    type: int
    default: 4
  s3_timeout:
    description: Seconds to wait for an S3 answer.
    type: int
    default: 60
requirements:
  - boto3
"""
