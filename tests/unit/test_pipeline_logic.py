"""Pure logic of the deployment pipelines (plugins/filter/pipeline.py): settings
judged without ever echoing a secret, controls selected and the skipped ones named, disk space,
alerts new since a deployment, error rate and latency before and after it, a pipeline's progress,
and a deployment record as a summary."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


from ansible_collections.betaskill.payops.plugins.filter import pipeline  # noqa: E402

SECRET = "s3cr3t-value-never-shown"
GOOD = {
    "payops_environment": "production",
    "payops_public_url": "https://app.betaskill.com",
    "payops_db_host": "db.example.supabase.co",
    "payops_db_port": "5432",
    "payops_db_name": "postgres",
    "payops_db_user": "postgres",
    "payops_db_password": SECRET,
    "payops_db_sslmode": "require",
    "payops_ikhokha_url": "https://api.ikhokha.com/public-api/v1/api",
    "payops_ikhokha_app_id": "IKAPP",
    "payops_ikhokha_app_secret": SECRET,
    "payops_s3_bucket": "betaskill-backups",
    "payops_s3_region": "af-south-1",
    "payops_s3_endpoint": "",
    "payops_aws_access_key_id": "",
    "payops_aws_secret_access_key": "",
    "payops_notify_url": f"https://hooks.slack.com/services/{SECRET}",
    "payops_release_source": "s3://betaskill-releases/releases",
}


def down(rows):
    return {row["component"]: row["value"] for row in rows if row["state"] == "down"}


def test_good_production_settings_pass_and_secrets_are_only_named():
    rows = pipeline.setting_rows(GOOD, "production") + pipeline.url_rows(GOOD, "production")
    assert down(rows) == {}
    assert rows[0]["value"] == "18/18 present and typed"
    assert "payops_notify_url" in rows[0]["detail"]
    assert SECRET not in repr(rows)


@pytest.mark.parametrize(("name", "value", "problem"), [
    ("payops_notify_url", "", "missing"),
    ("payops_ikhokha_app_secret", "  ", "missing"),
    ("payops_db_port", "54x2", "'54x2' is not a number"),
    ("payops_db_port", "70000", "70000 is not a port"),
    ("payops_db_sslmode", "disable", "disable does not encrypt"),
    ("payops_s3_bucket", "Bad_Bucket", "is not an S3 bucket name"),
    ("payops_public_url", "app.betaskill.com", "not an http(s) URL"),
    ("payops_db_host", "postgres://db", "is not a host name"),
    ("payops_release_source", "releases", "neither an absolute folder nor s3://"),
])
def test_each_bad_setting_is_named_with_what_is_wrong(name, value, problem):
    rows = pipeline.setting_rows({**GOOD, name: value}, "production")
    assert list(down(rows)) == [f"setting {name}"]
    assert problem in down(rows)[f"setting {name}"]


def test_a_secret_that_is_not_a_url_is_reported_without_its_value():
    rows = pipeline.setting_rows({**GOOD, "payops_notify_url": f"hooks/{SECRET}"}, "production")
    assert down(rows) == {"setting payops_notify_url": "not an http(s) URL"}
    assert SECRET not in repr(rows)


def test_one_s3_key_without_the_other_is_named():
    rows = pipeline.setting_rows({**GOOD, "payops_aws_access_key_id": "AKIA123"}, "production")
    assert down(rows) == {"setting payops_aws_secret_access_key": "missing (its pair is set)"}


def test_plain_http_is_refused_in_production_only():
    values = {**GOOD, "payops_notify_url": f"http://hooks.example/{SECRET}", "payops_public_url": "http://app.example"}
    assert set(down(pipeline.url_rows(values, "production"))) == {"url payops_notify_url", "url payops_public_url"}
    assert down(pipeline.url_rows(values, "local")) == {}
    assert SECRET not in repr(pipeline.url_rows(values, "production"))
    # The sandbox's plaintext database is fine locally, not in staging.
    assert down(pipeline.setting_rows({**GOOD, "payops_db_sslmode": "disable"}, "local")) == {}


CONTROLS = ["settings", "urls", "artefact", "callback", "ikhokha", "database", "migrations", "disk"]


def select(**kwargs):
    return pipeline.control_selection(CONTROLS, **kwargs)


def test_every_control_runs_when_the_procedure_does():
    assert select() == {"selected": CONTROLS, "skipped": {}, "unknown": []}


def test_skipped_controls_are_named_with_the_reason():
    found = select(checks="artefact,disk,callback", skip_checks=["callback"])
    assert found["selected"] == ["artefact", "disk"]
    assert found["skipped"]["callback"] == "skip_checks asked for it"
    assert found["skipped"]["settings"] == "not in checks=artefact,disk,callback"
    # --tags/--skip-tags are not read: a selected control that left no result is "not run".
    not_run = pipeline.not_run_rows(CONTROLS, [control for control in CONTROLS if control != "urls"])
    assert [(row["component"], row["value"]) for row in not_run] == [("control urls", "not run")]
    hotfix = select(subset=["artefact", "database", "ikhokha", "callback"], subset_reason="not in the fast subset")
    assert hotfix["selected"] == ["artefact", "callback", "ikhokha", "database"]
    assert set(hotfix["skipped"]) == {"settings", "urls", "migrations", "disk"}
    assert select(checks=["artefakt"])["unknown"] == ["artefakt"]


def test_disk_needs_room_for_artefact_and_unpacked_release():
    df = {"stdout_lines": ["Filesystem 1024-blocks Used Available Capacity Mounted on",
                           "/dev/sda1 1000000 900000 100000 90% /srv"]}
    needed = {"component": "app", "artefact": 20_000_000, "unpacked": 40_000_000, "path": "/srv/betaskill/app"}
    assert pipeline.disk_row("app-1", df, needed, 2)["state"] == "down"  # 102 MB free, 120 MB needed
    assert pipeline.disk_row("app-1", df, needed, 1)["state"] == "healthy"
    assert pipeline.disk_row("app-1", {"unreachable": True, "msg": "ssh: timeout"}, needed, 2)["value"] == "unreachable"
    assert pipeline.path_ancestors("/srv/betaskill/app") == ["/srv/betaskill/app", "/srv/betaskill", "/srv", "/"]
    # A host without a row failed before df: it is down, not left out.
    found = pipeline.disk_rows(["web-1", "app-1"], [{"component": "disk web-1", "state": "healthy"}, {}])
    assert [(row["component"], row["state"]) for row in found] == [("disk web-1", "healthy"), ("disk app-1", "down")]


START = "2026-05-01T10:00:00Z"


def alert(name, starts, state="active", **labels):
    return {"alertname": name, "starts_at": starts, "state": state, "labels": {"alertname": name, **labels}}


def test_an_alert_is_new_only_when_it_started_after_the_deployment_and_was_not_firing_then():
    active = [alert("Old", "2026-05-01T09:00:00.123456789Z"),
              alert("Refired", "2026-05-01T10:05:00Z", severity="critical"),
              alert("New", "2026-05-01T10:03:00Z"),
              alert("Hushed", "2026-05-01T10:04:00Z", state="suppressed")]
    firing = {"__name__": "ALERTS", "alertname": "Refired", "alertstate": "firing", "severity": "critical"}
    before = [{"metric": firing}]
    found = pipeline.alerts_since(active, before, START)
    assert [a["alertname"] for a in found["new"]] == ["New"]
    assert [a["alertname"] for a in found["before"]] == ["Old", "Refired"]
    assert [a["alertname"] for a in found["new_silenced"]] == ["Hushed"]


def kpis(requests, errors, p95):
    return [{"metric": {"kpi": "requests"}, "value": [0, str(requests)]},
            {"metric": {"kpi": "errors"}, "value": [0, str(errors)]},
            {"metric": {"kpi": "p95"}, "value": [0, str(p95)]}]


def test_error_rate_and_latency_are_judged_against_before_within_the_tolerance():
    same = pipeline.kpi_rows(kpis(1000, 10, 0.2), kpis(1000, 12, 0.24), 600, 0.25, 0.005, 0.05)
    assert [row["state"] for row in same] == ["healthy", "healthy"]
    worse = pipeline.kpi_rows(kpis(1000, 10, 0.2), kpis(1000, 80, 0.9), 600, 0.25, 0.005, 0.05)
    assert [row["state"] for row in worse] == ["down", "down"]
    assert worse[0]["value"] == "8.00 % vs 1.00 %"
    quiet = pipeline.kpi_rows(kpis(1000, 0, 0.2), kpis(3, 3, "NaN"), 600, 0.25, 0.005, 0.05)
    assert {row["state"] for row in quiet} == {"info"} and "too little traffic since" in quiet[0]["value"]


def test_a_pipeline_names_the_stage_it_stopped_at():
    order = ["a", "b", "c"]
    assert pipeline.pipeline_verdict(order, {"a": {"state": "passed"}, "b": {"state": "started"}}) == {
        "rows": [{"component": "a", "state": "healthy", "value": "passed", "target": "passed", "detail": ""},
                 {"component": "b", "state": "down", "value": "did not complete", "target": "passed", "detail": ""},
                 {"component": "c", "state": "info", "value": "not run", "target": "passed", "detail": ""}],
        "stopped_at": "b", "verdict": "failed"}
    passed = {stage: {"state": "passed"} for stage in order}
    assert pipeline.pipeline_verdict(order, passed)["verdict"] == "passed"
    assert pipeline.pipeline_verdict(order, {"a": {"state": "passed"}})["verdict"] == "running"


def test_a_deployment_record_becomes_a_summary_with_time_per_phase():
    row = {"run_id": "r1", "environment": "production", "kind": "deploy", "release": "1.1.0", "version": "1.1.0",
           "operator": "alice", "reason": "", "started_at": "2026-05-01T10:00:00Z",
           "finished_at": "2026-05-01T10:02:30Z", "outcome": "rolled back", "detail": "health gate: app-1",
           "phases": [{"phase": "check", "started": "2026-05-01T10:00:00.000000",
                       "finished": "2026-05-01T10:00:12.500000"}],
           "hosts": [{"component": "app app-1", "state": "down", "value": "rolled back"}], "migrations": {}}
    verdicts = [{"stage": "test:post-deployment", "verdict": "failed", "summary": "old"},
                {"stage": "test:post-deployment", "verdict": "passed", "summary": "new"}]
    later = [{"run_id": "r2", "outcome": "deployed", "operator": "bob"}]
    summary = pipeline.deployment_summary(row, verdicts, later)
    assert summary["seconds"] == 150.0 and summary["phases"][0]["seconds"] == 12.5
    assert summary["verdicts"] == [verdicts[1]]
    assert summary["rollback"]["automatic"] and summary["rollback"]["later"][0]["run_id"] == "r2"
    rows = {row["component"]: row for row in pipeline.summary_rows(summary)}
    assert rows["deployment"]["state"] == "down" and rows["phase check"]["value"] == "12.5 s"
    assert rows["validation test:post-deployment"]["value"] == "passed"
    assert rows["rollback"]["value"] == "automatic"
