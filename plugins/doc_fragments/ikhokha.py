# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options of plugins/module_utils/ikhokha.py:ikhokha_argument_spec().
    DOCUMENTATION = r"""
options:
  api_url:
    description: The iK Pay API base URL. Default C(IKHOKHA_API_URL).
    type: str
    default: https://api.ikhokha.com/public-api/v1/api
  app_id:
    description: The application id sent as IK-APPID. Default C(IKHOKHA_APP_ID).
    type: str
    required: true
  app_secret:
    description: The key of the IK-SIGN HMAC. Default C(IKHOKHA_APP_SECRET). Never logged.
    type: str
    required: true
  timeout:
    description: Seconds to wait for an answer.
    type: float
    default: 10.0
  validate_certs:
    description: Verify the gateway's TLS certificate.
    type: bool
    default: true
requirements:
  - requests
"""
