# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The connection options of plugins/module_utils/payops_db.py:db_argument_spec().
    DOCUMENTATION = r"""
options:
  login_host:
    description: Database host; Supabase's direct connection, not the pooler. Default C(PGHOST).
    type: str
    default: 127.0.0.1
  login_port:
    description: Database port (5432 for the direct connection). Default C(PGPORT).
    type: int
    default: 5432
  login_db:
    description: Database name. Default C(PGDATABASE).
    type: str
    default: postgres
    aliases: [db]
  login_user:
    description: Database user. Default C(PGUSER).
    type: str
    default: postgres
  login_password:
    description: Database password. Default C(PGPASSWORD). Never logged.
    type: str
  ssl_mode:
    description: libpq's sslmode; Supabase wants C(require) or stricter. Default C(PGSSLMODE).
    type: str
    default: prefer
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  connect_timeout:
    description: Seconds to wait for the connection.
    type: int
    default: 10
requirements:
  - psycopg >= 3
"""
