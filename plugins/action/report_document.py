# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller half of betaskill.payops.report_document (documented in
plugins/modules/report_document.py): the report's three files written in the controller's own
process, every string scrubbed of card numbers, e-mail addresses and the play's secrets."""

from __future__ import annotations

import os

from ansible.errors import AnsibleError
from ansible.plugins.action import ActionBase
from ansible_collections.betaskill.payops.plugins.module_utils import payops_report
from ansible_collections.betaskill.payops.plugins.module_utils.payops_redact import Redactor
from ansible_collections.betaskill.payops.plugins.modules.report_document import ARGUMENT_SPEC


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def _redactor(self, task_vars):
        """The values of the play's secret-named variables (payops_db_password, payops_notify_url, ...)."""
        redactor = Redactor()
        for name in list(task_vars):
            # The platform's variables and the vault's: a procedure's own names (a report_key) are no secret.
            if not name.startswith(("payops_", "vault_")) or not redactor.is_secret_name(name):
                continue
            try:
                redactor.learn(self._templar.template(task_vars[name]))
            except AnsibleError:
                continue
        return redactor

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _validation, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)
        try:
            kpis = [payops_report.kpi(item["name"], _number(item["name"], item["value"]), item["unit"],
                                      item["target"], item["op"], item["detail"], item["digits"])
                    for item in args["kpis"]]
        except ValueError as exc:
            result.update(failed=True, msg=str(exc))
            return result
        report = payops_report.report_document(
            args["title"], args["name"], args["period"], kpis, args["tables"], args["charts"],
            args["summary"], args["details"])
        report = payops_report.scrub(report, self._redactor(task_vars or {}))
        problems = payops_report.check_document(report)
        if problems:
            result.update(failed=True, msg=f"report {args['name']} is not well formed: " + "; ".join(problems))
            return result
        paths = {kind: os.path.join(args["dir"], f"{args['name']}.{extension}")
                 for kind, extension in (("html", "html"), ("json", "json"), ("markdown", "md"))}
        try:
            with open(args["html_template"], encoding="utf-8") as handle:
                html = payops_report.render_html(report, handle.read())
            with open(args["markdown_template"], encoding="utf-8") as handle:
                markdown = payops_report.render_markdown(report, handle.read())
            payops_report.write_report(paths["json"], report)
            payops_report.write_text(paths["html"], html)
            payops_report.write_text(paths["markdown"], markdown)
        except OSError as exc:
            result.update(failed=True, msg=f"cannot write report {args['name']}: {exc}")
            return result
        uploaded = []
        if args["upload"] and not self._task.check_mode:
            try:
                uploaded = _upload(args["upload"], [paths["html"], paths["json"], paths["markdown"]])
            except Exception as exc:  # boto3's and botocore's errors alike: the message says which
                result.update(failed=True, msg=f"report {args['name']} was written to {args['dir']} but not uploaded "
                                               f"to s3://{args['upload']['bucket']}/{args['upload']['key_prefix']}/: "
                                               f"{type(exc).__name__}: {exc}", **paths)
                return result
        verdicts = {verdict: 0 for verdict in payops_report.VERDICTS}
        for item in kpis:
            verdicts[item["verdict"]] += 1
        result.update(changed=bool(uploaded), uploaded=uploaded, markdown_text=markdown, verdicts=verdicts,
                      missed=[item["name"] for item in kpis if item["verdict"] == "missed"], **paths)
        return result


def _number(name, value):
    """A KPI's value: a number, or None for no data. A string that holds a number is read."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        return value
    try:
        text = str(value).strip()
        if text in ("", "None", "null"):
            return None
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        raise ValueError(f"KPI {name!r}: value must be a number or null (no data), got {value!r}") from None


CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".json": "application/json",
                 ".md": "text/markdown; charset=utf-8"}


def _upload(options, files):
    """Put each file under options' key_prefix; the keys written."""
    from ansible_collections.betaskill.payops.plugins.module_utils.payops_s3 import client_for, with_retries

    client = client_for({**options, "s3_timeout": 60})
    keys = []
    for path in files:
        key = f"{options['key_prefix'].rstrip('/')}/{os.path.basename(path)}"
        extra = {"ContentType": CONTENT_TYPES.get(os.path.splitext(path)[1], "application/octet-stream")}
        if options["encrypt"]:
            extra["ServerSideEncryption"] = "AES256"
        with open(path, "rb") as handle:
            with_retries(client.put_object, Bucket=options["bucket"], Key=key, Body=handle.read(), **extra)
        keys.append(key)
    return keys
