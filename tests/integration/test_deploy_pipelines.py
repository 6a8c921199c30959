"""The pipelines around a deployment, through `payops run` against the sandbox, judged by their
effects: the reports they write, the messages the notification sink received, the rows in the
database, the backup in S3, and what they print (never a secret).

    pre-deployment pipeline   validate:production-config, health:pre-deployment, backup:pre-deployment,
                              notify:deployment-start; stops at the first stage that fails
    post-deployment validator test:post-deployment, health:post-deployment, test:payment-flow,
                              monitoring:post-deployment, reports:deployment-summary
    hotfix path               hotfix:prepare, validate:hotfix, verify:hotfix

Deployments are recorded in payops.deployments by deploy:production; these tests write the rows
they need themselves (as playbooks/tasks/deploy-record.yml does), so that they test the pipelines
and not the deployment. The runs use their own audit log. Alerts posted to Alertmanager are
resolved, and test payments left pending are settled, before a test ends.
"""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import psycopg
import pytest
import requests
from conftest import damaged_release_copy, payops, wait_until
from psycopg.types.json import Jsonb

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

PIPELINE = "node scripts/pre-deployment-validation-pipeline.js"
VALIDATOR = "node scripts/production-deployment-validator.js"
ARTEFACTS = re.compile(r"run artefacts in (\S+)")
TEST_USER = str(uuid.uuid5(uuid.UUID("361e6d51-faec-444a-9079-341386da8e2e"), "payops-payment-flow"))


# --- helpers ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def audit_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("audit") / "audit.jsonl"


def run(audit_log: Path, command: str, *variables: str, check: bool = False) -> tuple[Any, Path | None]:
    """(the finished `payops run`, its run folder). Never raises on a failed run; never a traceback."""
    args = ["run", command, *(["--check"] if check else [])]
    for variable in variables:
        args += ["-e", variable]
    result = payops(*args, env={"PAYOPS_AUDIT_LOG": str(audit_log), "PAYOPS_OPERATOR": "pipeline-test"},
                    timeout=900, check=False)
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    match = ARTEFACTS.search(result.stdout)
    return result, Path(match.group(1)) if match else None


def report(run_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((run_dir / f"{name}.json").read_text())


def rows(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["component"]: row for row in data["rows"]}


def notifications(sandbox: dict, **match: Any) -> list[dict[str, Any]]:
    """The JSON bodies the sink received on /notify (payops_notify_url) whose fields match."""
    messages = requests.get(f"{sandbox['sink_url']}/messages", timeout=10).json()
    bodies = [m["body"] for m in messages if m["path"] == "/notify" and isinstance(m["body"], dict)]
    return [body for body in bodies if all(body.get(key) == value for key, value in match.items())]


def connect(sandbox: dict) -> psycopg.Connection:
    return psycopg.connect(sandbox["postgres_dsn"], autocommit=True)


def current_release(sandbox: dict) -> str:
    """What app-1's current points at: the release the platform runs."""
    return Path(sandbox["state_dir"], "hosts", "app-1", "app", "current").readlink().name


def record_deployment(sandbox: dict, release: str, started: datetime, seconds: float = 40, kind: str = "deploy",
                      outcome: str = "deployed", detail: str = "", run_id: str | None = None) -> str:
    """A payops.deployments row as deploy:production writes it; returns its run id."""
    run_id = run_id or f"test-{kind}-{secrets.token_hex(4)}"
    finished = started + timedelta(seconds=seconds)
    naive = started.astimezone(UTC).replace(tzinfo=None)
    phases = [{"phase": "check", "started": naive.isoformat(), "finished": (naive + timedelta(seconds=4)).isoformat()},
              {"phase": "migrations", "started": (naive + timedelta(seconds=4)).isoformat(),
               "finished": (naive + timedelta(seconds=6)).isoformat()},
              {"phase": "rollout", "started": (naive + timedelta(seconds=6)).isoformat(),
               "finished": (naive + timedelta(seconds=seconds)).isoformat()}]
    state = "healthy" if outcome == "deployed" else "down"
    hosts = [{"component": f"{component} {host}", "state": state, "value": outcome, "target": release,
              "detail": f"was 1.0.0, now {release if outcome == 'deployed' else '1.0.0'}"}
             for component, host in (("app", "app-1"), ("frontend", "web-1"))]
    with connect(sandbox) as conn:
        conn.execute(
            "INSERT INTO payops.deployments (run_id, environment, kind, release, version, operator, reason,"
            " started_at, finished_at, outcome, detail, phases, hosts, migrations)"
            " VALUES (%s, 'local', %s, %s, %s, 'pipeline-test', 'a test deployment', %s, %s, %s, %s, %s, %s, %s)",
            (run_id, kind, release, release, started, finished, outcome, detail, Jsonb(phases), Jsonb(hosts),
             Jsonb({"applied": [], "pending_before": []})))
    return run_id


def sandbox_secrets(sandbox: dict) -> list[str]:
    return [sandbox["ikhokha_app_secret"], sandbox["postgres_password"], sandbox["aws_secret_access_key"]]


def assert_no_secret_anywhere(sandbox: dict, result: Any, run_dir: Path, audit_log: Path) -> None:
    places = {"output": result.stdout + result.stderr, "audit log": audit_log.read_text()}
    for path in run_dir.rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_text(errors="replace")
    for where, text in places.items():
        for secret in sandbox_secrets(sandbox):
            assert secret not in text, f"a secret leaked into {where}"


def post_alert(sandbox: dict, name: str, starts: datetime, ends: datetime) -> None:
    alert = {"labels": {"alertname": name, "severity": "warning", "source": "payops-pipeline-tests"},
             "annotations": {"summary": "posted by the deployment pipeline tests"},
             "startsAt": starts.isoformat(), "endsAt": ends.isoformat()}
    requests.post(f"{sandbox['alertmanager_url']}/api/v2/alerts", json=[alert], timeout=5).raise_for_status()


def settle(sandbox: dict, paylink_id: str) -> None:
    """Fail a test paylink through the gateway, so that no payment waits for a callback afterwards."""
    admin = sandbox["ikhokha_url"].split("/public-api")[0]
    requests.post(f"{admin}/_sim/paylinks/{paylink_id}/fail", timeout=10).raise_for_status()
    with connect(sandbox) as conn:
        wait_until(lambda: conn.execute(
            "SELECT status FROM public.payments WHERE gateway_response ->> 'paylinkID' = %s", (paylink_id,)
        ).fetchone()[0] != "pending", timeout=60, what="the test payment to be settled")


# --- before a deployment --------------------------------------------------------------------------------

def test_the_pre_deployment_pipeline_passes_on_release_1_1_0_and_announces_it(sandbox, audit_log):
    with connect(sandbox) as conn:
        applied = {row[0] for row in conn.execute("SELECT name FROM payops.schema_migrations")}
    result, run_dir = run(audit_log, PIPELINE, "release=1.1.0")
    assert result.returncode == 0, result.stdout + result.stderr

    pipeline = report(run_dir, "predeploy-pipeline")
    assert pipeline["details"]["verdict"] == "passed" and pipeline["details"]["stopped_at"] is None
    assert [(row["component"], row["value"]) for row in pipeline["rows"]] == [
        ("validate:production-config", "passed"), ("health:pre-deployment", "passed"),
        ("backup:pre-deployment", "passed"), ("notify:deployment-start", "passed")]

    config = rows(report(run_dir, "validate-production-config"))
    assert all(row["state"] == "healthy" for row in config.values()), config
    assert set(config) >= {"settings", "urls", "artefact", "callback route", "ikhokha credentials", "database",
                           "migrations", "disk web-1", "disk app-1"}
    pending = sorted({"0001_course_reviews.sql"} - applied)
    assert config["migrations"]["value"] == f"{len(pending)} pending"
    assert report(run_dir, "validate-production-config")["details"]["pending_migrations"] == pending

    # The backup exists in S3, labelled pre-deployment, manifest written.
    backup = report(run_dir, "backup-database")["details"]
    assert "pre-deployment" in backup["backup_id"]
    s3 = boto3.client("s3", endpoint_url=sandbox["s3_endpoint"], region_name=sandbox["s3_region"],
                      aws_access_key_id=sandbox["aws_access_key_id"],
                      aws_secret_access_key=sandbox["aws_secret_access_key"])
    manifest = json.loads(s3.get_object(Bucket=sandbox["s3_bucket"], Key=backup["manifest_key"])["Body"].read())
    assert manifest["label"] == "pre-deployment"

    # The team was told, once, with the structured fields beside the Slack text.
    sent = notifications(sandbox, event="deployment-start", run_id=run_dir.name)
    assert len(sent) == 1, sent
    message = sent[0]
    assert message["release"] == "1.1.0" and message["environment"] == "local"
    assert message["operator"] == "pipeline-test" and "release 1.1.0" in message["text"]
    assert message["checks"]["backup:pre-deployment"] == backup["backup_id"]


def test_a_missing_setting_stops_the_pipeline_at_validation_naming_it(sandbox, audit_log):
    result, run_dir = run(audit_log, PIPELINE, "release=1.1.0", "payops_notify_url=")
    assert result.returncode != 0
    assert "setting payops_notify_url: missing (empty or not set)" in result.stdout
    assert "The pre-deployment pipeline stops here" in result.stdout

    pipeline = report(run_dir, "predeploy-pipeline")
    assert pipeline["details"]["stopped_at"] == "validate:production-config"
    assert [row["value"] for row in pipeline["rows"]] == ["failed", "not run", "not run", "not run"]
    assert "payops_notify_url" in pipeline["rows"][0]["detail"]
    # Nothing after the failed stage happened: no health report, no backup, no message.
    assert not (run_dir / "health-pre-deployment.json").exists()
    assert not (run_dir / "backup-database.json").exists()
    assert notifications(sandbox, run_id=run_dir.name) == []
    # The other controls ran and passed, with the iKhokha secret and the database password in use.
    config = rows(report(run_dir, "validate-production-config"))
    assert config["ikhokha credentials"]["state"] == "healthy" and config["database"]["state"] == "healthy"
    assert_no_secret_anywhere(sandbox, result, run_dir, audit_log)


def test_an_empty_ikhokha_secret_is_named_and_the_skipped_controls_too(sandbox, audit_log):
    result, run_dir = run(audit_log, "validate:production-config", "release=1.1.0", "payops_ikhokha_app_secret=",
                          "checks=settings,ikhokha")
    assert result.returncode != 0
    assert "setting payops_ikhokha_app_secret: missing" in result.stdout
    config = rows(report(run_dir, "validate-production-config"))
    assert config["setting payops_ikhokha_app_secret"]["state"] == "down"
    # Not tried without the secret, and said so; the other controls are named as skipped.
    assert config["ikhokha credentials"]["value"] == "not checked"
    for control in ("urls", "artefact", "callback", "database", "migrations", "disk"):
        assert config[f"control {control}"]["detail"] == "not in checks=settings,ikhokha"
    assert_no_secret_anywhere(sandbox, result, run_dir, audit_log)


def test_a_damaged_artefact_fails_validation(sandbox, audit_log, tmp_path):
    store = damaged_release_copy(sandbox["release_store"], "1.1.0", "app.tar.gz", tmp_path / "releases")

    result, run_dir = run(audit_log, "validate:production-config", "release=1.1.0", f"release_source={store}",
                          "checks=artefact,migrations,disk")
    assert result.returncode != 0
    config = rows(report(run_dir, "validate-production-config"))
    assert config["artefact"]["state"] == "down"
    assert "app.tar.gz of release 1.1.0 has SHA-256" in config["artefact"]["detail"]
    assert "SHA256SUMS says" in config["artefact"]["detail"]
    assert config["migrations"]["value"] == "not checked"
    assert "artefact: did not verify" in result.stdout


def test_a_release_id_that_is_a_path_is_refused_clearly(sandbox, audit_log):
    result, _ = run(audit_log, "validate:production-config", "release=../1.1.0", "checks=artefact")
    assert result.returncode != 0
    assert "release=\"../1.1.0\" is not a safe release id" in result.stdout


# --- after a deployment -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validated(sandbox, audit_log) -> Iterator[tuple[Any, Path, str, str]]:
    """The validator, once, after a deployment of the release the sandbox runs (recorded 3 min ago)."""
    release = current_release(sandbox)
    deployment = record_deployment(sandbox, release, datetime.now(UTC) - timedelta(minutes=3))
    result, run_dir = run(audit_log, VALIDATOR, f"run_id={deployment}")
    yield result, run_dir, deployment, release


def test_the_validator_passes_after_the_sandbox_s_current_release(sandbox, validated):
    result, run_dir, _, release = validated
    assert result.returncode == 0, result.stdout + result.stderr
    pipeline = report(run_dir, "postdeploy-pipeline")
    assert [(row["component"], row["value"]) for row in pipeline["rows"]] == [
        ("test:post-deployment", "passed"), ("health:post-deployment", "passed"), ("test:payment-flow", "passed"),
        ("monitoring:post-deployment", "passed"), ("reports:deployment-summary", "passed")]
    smoke = rows(report(run_dir, "test-post-deployment"))
    assert smoke["/version.json"]["value"] == f"HTTP 200, version {release}"
    assert smoke["/api/health"]["value"] == f"HTTP 200, ok, version {release}"
    assert smoke["checkout validation"]["value"].startswith("HTTP 400")
    assert smoke["webhook refusal"]["value"].startswith("HTTP 401")
    monitoring = rows(report(run_dir, "monitoring-post-deployment"))
    assert monitoring["new alerts firing"]["state"] == "healthy"


def test_the_payment_flow_leaves_a_completed_payment(sandbox, validated):
    _, run_dir, _, _ = validated
    flow = report(run_dir, "test-payment-flow")
    payment = flow["details"]["payment"]
    with connect(sandbox) as conn:
        status, user, enrollment = conn.execute(
            "SELECT p.status, p.user_id::text, e.payment_status FROM public.payments p"
            " JOIN public.enrollments e ON e.payment_id = p.id WHERE p.id = %s", (payment["payment_id"],)).fetchone()
        receipts = conn.execute("SELECT source, status FROM payops.webhook_receipts WHERE payment_id = %s",
                                (payment["payment_id"],)).fetchall()
    assert (status, enrollment, user) == ("completed", "completed", TEST_USER)
    # The signed callback came through the webhook, not through a reconciliation.
    assert receipts == [("webhook", "SUCCESS")]
    assert rows(flow)["gateway callback"]["state"] == "healthy"


def test_the_deployment_summary_is_written_and_sent(sandbox, validated):
    _, run_dir, deployment, release = validated
    markdown = (run_dir / "deployment-summary.md").read_text()
    assert markdown.startswith(f"# Deployment of {release} to local: deployed")
    assert "| rollout |" in markdown and "| test:payment-flow | passed |" in markdown
    summary = report(run_dir, "deployment-summary")
    assert summary["details"]["run_id"] == deployment and summary["details"]["seconds"] == 40.0
    assert [p["seconds"] for p in summary["details"]["phases"]] == [4.0, 2.0, 34.0]
    assert rows(summary)["validation monitoring:post-deployment"]["value"] == "passed"
    sent = notifications(sandbox, event="deployment-summary", run_id=deployment)
    assert len(sent) == 1
    assert {v["stage"]: v["verdict"] for v in sent[0]["summary"]["verdicts"]} == {
        "test:post-deployment": "passed", "health:post-deployment": "passed", "test:payment-flow": "passed",
        "monitoring:post-deployment": "passed"}
    assert sent[0]["markdown"].strip() == markdown.strip()
    with connect(sandbox) as conn:
        kept = conn.execute("SELECT stage, verdict, validator_run_id FROM payops.deployment_validations"
                            " WHERE deployment_run_id = %s ORDER BY id", (deployment,)).fetchall()
    assert [(stage, verdict) for stage, verdict, _ in kept] == [
        ("test:post-deployment", "passed"), ("health:post-deployment", "passed"), ("test:payment-flow", "passed"),
        ("monitoring:post-deployment", "passed")]
    assert {validator for _, _, validator in kept} == {run_dir.name}


def test_a_rolled_back_deployment_is_summarised_with_its_rollbacks(sandbox, audit_log):
    # Far in the past, away from other tests' rows; a rollback after the next deployment is that one's.
    started = datetime.now(UTC) - timedelta(days=100 + secrets.randbelow(3000), minutes=secrets.randbelow(1440))
    deployment = record_deployment(sandbox, "1.2.0", started, seconds=75, outcome="rolled back",
                                   detail="app app-1: health gate: release 1.2.0 needs setting search_url")
    later = record_deployment(sandbox, "previous", started + timedelta(minutes=20), kind="rollback")
    record_deployment(sandbox, "1.1.0", started + timedelta(minutes=40))
    record_deployment(sandbox, "previous", started + timedelta(minutes=50), kind="rollback")
    result, run_dir = run(audit_log, "reports:deployment-summary", f"run_id={deployment}")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = report(run_dir, "deployment-summary")["details"]
    assert summary["outcome"] == "rolled back" and summary["rollback"]["automatic"] is True
    assert [r["run_id"] for r in summary["rollback"]["later"]] == [later]
    markdown = (run_dir / "deployment-summary.md").read_text()
    assert "Rolled back automatically: app app-1: health gate" in markdown
    assert f"(run {later}, deployed)" in markdown
    assert "has not run for this deployment" in markdown
    sent = notifications(sandbox, event="deployment-summary", run_id=deployment)
    assert len(sent) == 1 and "Rolled back: app app-1" in sent[0]["text"]


def test_a_summary_of_an_unknown_run_is_a_clear_error(sandbox, audit_log):
    result, _ = run(audit_log, "reports:deployment-summary", "run_id=no-such-run")
    assert result.returncode != 0
    assert "run_id=no-such-run: no deployment of local with that run id in payops.deployments" in result.stdout


def test_monitoring_fails_when_a_new_alert_fires(sandbox, audit_log):
    now = datetime.now(UTC)
    new, old = f"PayopsDeployNew{secrets.token_hex(3)}", f"PayopsDeployOld{secrets.token_hex(3)}"
    post_alert(sandbox, old, now - timedelta(minutes=20), now + timedelta(minutes=10))
    post_alert(sandbox, new, now, now + timedelta(minutes=10))
    try:
        wait_until(lambda: {new, old} <= {a["labels"]["alertname"] for a in requests.get(
            f"{sandbox['alertmanager_url']}/api/v2/alerts", timeout=5).json()}, timeout=30, what="the alerts")
        result, run_dir = run(audit_log, "monitoring:post-deployment", "since=5m")
        assert result.returncode != 0
        verdict = rows(report(run_dir, "monitoring-post-deployment"))["new alerts firing"]
        # The sandbox's own rules may fire meanwhile (earlier tests' failed payments): the new
        # alert is counted, the one firing before is not, whatever else is firing.
        firing = verdict["value"].split(": ", 1)[1].split(", ")
        assert verdict["state"] == "down" and new in firing and old not in firing, verdict
        assert f"firing before the deployment: {old}" in verdict["detail"]
        assert "monitoring:post-deployment failed: down: new alerts firing" in result.stdout
    finally:
        for name, starts in ((new, now), (old, now - timedelta(minutes=20))):
            post_alert(sandbox, name, starts, datetime.now(UTC))


# --- check mode ------------------------------------------------------------------------------------------

def test_check_mode_sends_nothing_and_pays_nothing(sandbox, audit_log):
    result, run_dir = run(audit_log, "notify:deployment-start", "release=1.1.0", check=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert rows(report(run_dir, "notify-deployment-start"))["notification"]["value"] == "check mode: not sent"
    assert notifications(sandbox, run_id=run_dir.name) == []

    with connect(sandbox) as conn:
        before = conn.execute("SELECT count(*) FROM public.payments WHERE user_id = %s", (TEST_USER,)).fetchone()[0]
        result, run_dir = run(audit_log, "test:payment-flow", check=True)
        after = conn.execute("SELECT count(*) FROM public.payments WHERE user_id = %s", (TEST_USER,)).fetchone()[0]
    assert result.returncode == 0, result.stdout + result.stderr
    assert after == before
    assert rows(report(run_dir, "test-payment-flow"))["checkout"]["value"] == "check mode: no test payment made"


# --- the hotfix path -------------------------------------------------------------------------------------

def test_the_hotfix_path_prepares_validates_and_verifies(sandbox, audit_log):
    reason = f"double charges on retry, INC-{secrets.randbelow(10000)}"
    result, run_dir = run(audit_log, "hotfix:prepare", "release=1.1.0", f"reason={reason}")
    assert result.returncode == 0, result.stdout + result.stderr
    sums = dict(reversed(line.split()) for line in
                (Path(sandbox["release_store"]) / "1.1.0" / "SHA256SUMS").read_text().splitlines())
    with connect(sandbox) as conn:
        recorded = conn.execute("SELECT release, operator, artefacts, run_id FROM payops.hotfixes WHERE reason = %s",
                                (reason,)).fetchall()
    assert len(recorded) == 1
    release, operator, artefacts, run_id = recorded[0]
    assert (release, operator, run_id) == ("1.1.0", "pipeline-test", run_dir.name)
    assert artefacts == {"app": sums["app.tar.gz"], "frontend": sums["frontend.tar.gz"]}
    # The exact next commands, deploy:hotfix pinning the verified checksums.
    assert "payops run validate:hotfix -i inventories/local/hosts.yml -e release=1.1.0" in result.stdout
    assert "payops run deploy:hotfix -i inventories/local/hosts.yml -e release=1.1.0 -e '{\"reason\": " in result.stdout
    assert sums["app.tar.gz"] in result.stdout

    result, run_dir = run(audit_log, "validate:hotfix", "release=1.1.0")
    assert result.returncode == 0, result.stdout + result.stderr
    checked = rows(report(run_dir, "validate-hotfix"))
    assert {"artefact", "database", "ikhokha credentials", "callback route"} <= set(checked)
    for control in ("settings", "urls", "migrations", "disk"):
        assert checked[f"control {control}"]["value"] == "skipped"
        assert "fast subset" in checked[f"control {control}"]["detail"]

    result, run_dir = run(audit_log, "verify:hotfix")
    paylink = report(run_dir, "verify-hotfix")["details"]["payment"].get("paylink_id") if run_dir else None
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        verified = rows(report(run_dir, "verify-hotfix"))
        assert verified["/version.json"]["state"] == "healthy" and verified["paylink"]["state"] == "healthy"
        assert verified["payment"]["value"] == "stopped at the paylink"
        with connect(sandbox) as conn:
            assert conn.execute("SELECT status FROM public.payments WHERE gateway_response ->> 'paylinkID' = %s",
                                (paylink,)).fetchone()[0] == "pending"
    finally:
        if paylink:
            settle(sandbox, paylink)
