# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Filters of the reports (issue 14): KPIs as verdict rows, and the daily summary's document made
from what the sources answered. The verdicts themselves are payops_report's."""

from __future__ import annotations

from ansible_collections.betaskill.payops.plugins.module_utils import payops_report


def report_kpi_rows(kpis):
    """Unjudged KPI specs (name, value, unit, target, op, detail) as the report role's verdict rows."""
    judged = [payops_report.kpi(item["name"], item.get("value"), item.get("unit", ""), item.get("target"),
                                item.get("op"), item.get("detail", ""), item.get("digits", 1)) for item in kpis]
    return payops_report.kpi_rows(judged)


class FilterModule:
    def filters(self):
        return {"report_kpi_rows": report_kpi_rows}
