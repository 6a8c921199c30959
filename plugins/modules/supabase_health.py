#!/usr/bin/python
# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: supabase_health
short_description: Health of the Supabase PostgreSQL database, as facts and a verdict
description:
  - Connects over the direct connection and measures the connect latency, then reads the server
    version, connections in use against C(max_connections), long-running and blocked queries
    (C(pg_stat_activity), C(pg_blocking_pids)), the database size, the buffer cache hit ratio,
    replication slots where the role may see them, and the webhook backlog (payments still
    C(pending) with a paylink, older than O(backlog_minutes)).
  - "RV(state) is C(down) when the database cannot be reached, C(degraded) when a threshold is
    breached (connections over O(max_connections_percent), a query older than
    O(long_query_seconds), a blocked query, an inactive replication slot, a webhook backlog), else
    C(healthy). Each finding is named in RV(findings)."
  - The module reports; an unreachable database is a verdict, not a task failure (set
    O(fail_on_unreachable) to change that).
  - Read-only (it runs SELECTs in an autocommit session); check mode runs the same queries.
author: payops contributors (!UNKNOWN)
options:
  long_query_seconds:
    description: A statement (or an open transaction) running longer than this is reported.
    type: float
    default: 60
  max_connections_percent:
    description: Connections in use above this share of max_connections make the verdict degraded.
    type: float
    default: 80
  backlog_minutes:
    description: A pending payment with a paylink older than this counts as webhook backlog.
    type: int
    default: 5
  max_connect_ms:
    description: A connect latency above this makes the verdict degraded.
    type: float
    default: 1000
  queries_limit:
    description: At most this many long-running queries are returned.
    type: int
    default: 20
  fail_on_unreachable:
    description: Fail the task when the database cannot be reached.
    type: bool
    default: false
extends_documentation_fragment:
  - betaskill.payops.payops_db
"""

EXAMPLES = r"""
- name: Health | The database
  betaskill.payops.supabase_health:
    login_host: "{{ payops_db_host }}"
    login_port: "{{ payops_db_port | int }}"
    login_db: "{{ payops_db_name }}"
    login_user: "{{ payops_db_user }}"
    login_password: "{{ payops_db_password }}"
    ssl_mode: "{{ payops_db_sslmode }}"
    long_query_seconds: 30
  register: database

- name: Health | The database, connection from PGHOST, PGPORT, PGUSER, PGPASSWORD
  betaskill.payops.supabase_health:
"""

RETURN = r"""
state:
  description: healthy, degraded or down.
  returned: always
  type: str
  sample: healthy
reachable:
  description: Whether the database accepted the connection.
  returned: always
  type: bool
  sample: true
message:
  description: One line an operator reads.
  returned: always
  type: str
  sample: "PostgreSQL 15.6, 7/100 connections, 12 MB, no long or blocked queries"
findings:
  description: Each breached threshold, in words.
  returned: always
  type: list
  elements: str
  sample: ["1 query running longer than 60 s (pid 4242, 93 s)"]
connect_ms:
  description: Time to connect and authenticate, in milliseconds.
  returned: when reachable
  type: float
  sample: 6.3
server_version:
  description: The server's version.
  returned: when reachable
  type: str
  sample: "15.6"
connections:
  description: Connections in use, the maximum, and the share in percent.
  returned: when reachable
  type: dict
  sample: {used: 7, max: 100, percent: 7.0, by_state: {active: 1, idle: 6}}
long_running_queries:
  description: Statements or transactions older than long_query_seconds, oldest first.
  returned: when reachable
  type: list
  elements: dict
  sample: [{pid: 4242, age_seconds: 93.1, state: active, wait_event: null, user: postgres,
            application: psql, query: "SELECT pg_sleep(600)", blocked_by: []}]
blocked_queries:
  description: Statements waiting for a lock, with the pids that block them.
  returned: when reachable
  type: list
  elements: dict
  sample: [{pid: 4250, blocked_by: [4242], age_seconds: 12.0, query: "UPDATE payments ..."}]
database_size_bytes:
  description: Size of the database.
  returned: when reachable
  type: int
  sample: 12582912
cache_hit_ratio:
  description: Share of block reads served from the buffer cache, 0 to 1 (null before any read).
  returned: when reachable
  type: float
  sample: 0.998
replication_slots:
  description: Replication slots (visible is false when the role may not read them).
  returned: when reachable
  type: dict
  sample: {visible: true, slots: [{name: s1, type: logical, active: false, retained_bytes: 1048576}]}
webhook_backlog:
  description: Pending payments with a paylink older than backlog_minutes, and the oldest one's age.
  returned: when reachable
  type: dict
  sample: {count: 0, oldest_seconds: null, minutes: 5}
rows:
  description:
    - The verdicts in the report role's row shape (component, state, value, target, detail) - the
      database, and the webhook backlog when it was measured - judged here against the thresholds
      given; hand them to the report as they are.
  returned: always
  type: list
  elements: dict
  sample:
    - {component: database, state: healthy, value: "7/100 conn, 3 ms", target: "reachable, < 60 s queries",
       detail: ""}
    - {component: webhook backlog, state: healthy, value: "0 waiting > 5 min", target: "0"}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.betaskill.payops.plugins.module_utils.payops_rows import number, truncate
from ansible_collections.betaskill.payops.plugins.module_utils.payops_db import (
    connect_or_error,
    db_argument_spec,
    describe,
    first_line,
    psycopg,
)

ACTIVITY_SQL = """
SELECT pid, usename AS user, application_name AS application, state, wait_event_type, wait_event,
       round(extract(epoch FROM now() - coalesce(query_start, xact_start))::numeric, 1)::float AS age_seconds,
       round(extract(epoch FROM now() - xact_start)::numeric, 1)::float AS transaction_seconds,
       left(query, 300) AS query,
       pg_blocking_pids(pid) AS blocked_by
  FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
"""


def verdict_rows(params, state, findings, value, backlog=None):
    """The database's row, and the webhook backlog's when it was counted; states as judged in main()."""
    rows = [{"component": "database", "state": state, "value": value,
             "target": f"reachable, < {number(params['long_query_seconds'])} s queries",
             "detail": truncate("; ".join(findings))}]
    if backlog is not None and backlog.get("count") is not None:
        rows.append({"component": "webhook backlog", "state": "degraded" if backlog["count"] else "healthy",
                     "value": f"{backlog['count']} waiting > {params['backlog_minutes']} min", "target": "0"})
    return rows


def main():
    argument_spec = db_argument_spec()
    argument_spec.update(
        long_query_seconds=dict(type="float", default=60.0),
        max_connections_percent=dict(type="float", default=80.0),
        backlog_minutes=dict(type="int", default=5),
        max_connect_ms=dict(type="float", default=1000.0),
        queries_limit=dict(type="int", default=20),
        fail_on_unreachable=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    params = module.params

    conn, error = connect_or_error(module, autocommit=True, application_name="payops supabase_health")
    if conn is None:
        if params["fail_on_unreachable"]:
            module.fail_json(msg=error, state="down", reachable=False, findings=[error])
        module.exit_json(changed=False, state="down", reachable=False, message=error, findings=[error],
                         database=describe(params), rows=verdict_rows(params, "down", [error], "unreachable"))

    findings = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting('server_version') AS version,"
                        " current_setting('max_connections')::int AS max_connections,"
                        " pg_database_size(current_database()) AS size")
            server = cur.fetchone()
            cur.execute("SELECT coalesce(state, 'unknown') AS state, count(*) AS n FROM pg_stat_activity"
                        " WHERE backend_type = 'client backend' GROUP BY 1")
            by_state = {row["state"]: row["n"] for row in cur.fetchall()}
            cur.execute(ACTIVITY_SQL)
            activity = cur.fetchall()
            cur.execute("SELECT sum(blks_hit)::float / nullif(sum(blks_hit) + sum(blks_read), 0) AS ratio"
                        " FROM pg_stat_database WHERE datname = current_database()")
            ratio = cur.fetchone()["ratio"]
            slots = {"visible": True, "slots": []}
            try:
                cur.execute("SELECT slot_name AS name, slot_type AS type, active,"
                            " pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes"
                            " FROM pg_replication_slots")
                slots["slots"] = cur.fetchall()
            except psycopg.errors.InsufficientPrivilege:
                slots = {"visible": False, "slots": []}
            backlog = {"count": None, "oldest_seconds": None, "minutes": params["backlog_minutes"]}
            try:
                cur.execute(
                    "SELECT count(*) AS count,"
                    " round(extract(epoch FROM now() - min(created_at))::numeric, 0)::float AS oldest_seconds"
                    " FROM public.payments WHERE status = 'pending' AND gateway_response ? 'paylinkID'"
                    " AND created_at < now() - make_interval(mins => %(minutes)s)",
                    {"minutes": params["backlog_minutes"]})
                backlog.update(cur.fetchone())
            except psycopg.errors.UndefinedTable:
                backlog["error"] = "public.payments does not exist"
    except psycopg.Error as exc:
        module.exit_json(changed=False, state="down", reachable=True,
                         message=f"the database {describe(params)} answered the connection but not the "
                                 f"health queries: {first_line(exc)}", findings=[first_line(exc)],
                         rows=verdict_rows(params, "down", [first_line(exc)], "queries failed"))
    finally:
        conn.close()

    used = sum(by_state.values())
    percent = round(100.0 * used / server["max_connections"], 1)
    connections = {"used": used, "max": server["max_connections"], "percent": percent, "by_state": by_state}
    long_running = sorted(
        (row for row in activity
         if row["state"] not in ("idle", None) and (row["age_seconds"] or 0) > params["long_query_seconds"]),
        key=lambda row: -(row["age_seconds"] or 0))[: params["queries_limit"]]
    blocked = [row for row in activity if row["blocked_by"]]
    for row in activity:
        row.pop("wait_event_type", None)

    if conn.payops_connect_ms > params["max_connect_ms"]:
        findings.append(f"connecting took {conn.payops_connect_ms:g} ms (over {params['max_connect_ms']:g} ms)")
    if percent > params["max_connections_percent"]:
        findings.append(f"{used} of {server['max_connections']} connections in use ({percent:g} %, over "
                        f"{params['max_connections_percent']:g} %)")
    if long_running:
        oldest = long_running[0]
        plural = "y" if len(long_running) == 1 else "ies"
        findings.append(f"{len(long_running)} quer{plural} running longer than {params['long_query_seconds']:g} s "
                        f"(oldest: pid {oldest['pid']}, {oldest['age_seconds']:g} s, {oldest['state']})")
    if blocked:
        findings.append(f"{len(blocked)} blocked quer{'y' if len(blocked) == 1 else 'ies'} (pid {blocked[0]['pid']} "
                        f"waits for {', '.join(map(str, blocked[0]['blocked_by']))})")
    inactive = [slot["name"] for slot in slots["slots"] if not slot["active"]]
    if inactive:
        findings.append(f"inactive replication slot(s) retaining WAL: {', '.join(inactive)}")
    if backlog.get("count"):
        findings.append(f"webhook backlog: {backlog['count']} payments pending for more than "
                        f"{params['backlog_minutes']} min")

    state = "degraded" if findings else "healthy"
    value = f"{used}/{server['max_connections']} conn, {round(conn.payops_connect_ms)} ms"
    version = server["version"].split()[0]
    message = (f"PostgreSQL {version}, connect {conn.payops_connect_ms:g} ms, {used}/{server['max_connections']} "
               f"connections, {server['size'] // (1024 * 1024)} MB")
    message += "; " + "; ".join(findings) if findings else ", no long-running or blocked queries"
    module.exit_json(
        changed=False, state=state, reachable=True, message=message,
        findings=findings, connect_ms=conn.payops_connect_ms, server_version=version, connections=connections,
        long_running_queries=long_running, blocked_queries=blocked, database_size_bytes=server["size"],
        cache_hit_ratio=round(ratio, 4) if ratio is not None else None, replication_slots=slots,
        webhook_backlog=backlog, rows=verdict_rows(params, state, findings, value, backlog),
    )


if __name__ == "__main__":
    main()
