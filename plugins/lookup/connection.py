# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: connection
short_description: a module group's connection options from the platform's variables, mapped once
description:
  - The platform's variables (C(payops_db_host), C(payops_s3_bucket), C(payops_ikhokha_app_id), ...;
    see docs/conventions.md) as the options of the modules of one action group, for
    C(module_defaults). The mapping lives here and nowhere else.
  - A variable that is undefined or empty is left out, so the module's own environment default
    (C(PGHOST), C(AWS_ENDPOINT_URL), C(IKHOKHA_APP_ID), ...) applies, as AWX credential types inject them.
options:
  _terms:
    description: The group, C(database), C(s3) or C(ikhokha).
    required: true
    type: list
    elements: str
"""

EXAMPLES = r"""
- name: A procedure that talks to the database and to S3
  hosts: localhost
  module_defaults:
    group/betaskill.payops.database: "{{ lookup('betaskill.payops.connection', 'database') }}"
    group/community.postgresql.all: "{{ lookup('betaskill.payops.connection', 'database') }}"
    group/betaskill.payops.s3: "{{ lookup('betaskill.payops.connection', 's3') }}"
  tasks:
    - name: Read the switches
      betaskill.payops.payops_switch:
        state: query
"""

RETURN = r"""
_raw:
  description: The options, one mapping per group named.
  type: list
  elements: dict
"""

from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase

# option -> (platform variable, type)
GROUPS = {
    "database": {
        "login_host": ("payops_db_host", str),
        "login_port": ("payops_db_port", int),
        "login_user": ("payops_db_user", str),
        "login_password": ("payops_db_password", str),
        "login_db": ("payops_db_name", str),
        "ssl_mode": ("payops_db_sslmode", str),
    },
    "s3": {
        "bucket": ("payops_s3_bucket", str),
        "endpoint_url": ("payops_s3_endpoint", str),
        "region": ("payops_s3_region", str),
        "access_key": ("payops_aws_access_key_id", str),
        "secret_key": ("payops_aws_secret_access_key", str),
    },
    "ikhokha": {
        "api_url": ("payops_ikhokha_url", str),
        "app_id": ("payops_ikhokha_app_id", str),
        "app_secret": ("payops_ikhokha_app_secret", str),
    },
}


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        variables = variables or {}
        templar = self._templar.copy_with_new_env(available_variables=variables)
        results = []
        for group in terms:
            mapping = GROUPS.get(group)
            if mapping is None:
                raise AnsibleError(f"betaskill.payops.connection: no group {group!r}; "
                                   f"use one of {', '.join(GROUPS)}")
            options = {}
            for option, (name, kind) in mapping.items():
                if name not in variables:
                    continue
                value = templar.template(variables[name])
                if value is None or value == "":
                    continue
                try:
                    options[option] = kind(value)
                except (TypeError, ValueError):
                    raise AnsibleError(f"{name} must be {'an integer' if kind is int else 'a string'}, "
                                       f"got {value!r}") from None
            results.append(options)
        return results
