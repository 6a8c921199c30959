# Copyright: payops contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reports, the one owner: a report's JSON file (written atomically, readable by its owner's group
only), and the report documents of issue 14 (KPIs against targets, tables, charts) with their
self-contained HTML page and Markdown summary.

Standard library at import: the action half of report_json writes JSON in the controller's own
process, and the module half (the same file on a host) does the same; drawing a page imports
Jinja2 and matplotlib, on the controller only.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime

from ansible_collections.betaskill.payops.plugins.module_utils.payops_mask import mask_text


def document(title, rows, details):
    return {"title": title, "time": datetime.now(UTC).isoformat(), "rows": rows, "details": details}


def write_report(path, content, dir_mode=0o750, file_mode=0o640):
    """Write `content` (a JSON-able mapping) to `path`, creating its folder; returns the path."""
    text = json.dumps(content, indent=4, sort_keys=True, ensure_ascii=False, default=str) + "\n"
    return write_text(path, text, file_mode, dir_mode)


# --- Reports with KPIs, tables and charts (issue 14's framework) ---------------------------------
# A report document is the JSON above ({title, time, rows, details}) with the report's own parts
# beside it: `period`, `kpis` (each against its runbook target, with a verdict), `tables`,
# `charts` and `summary`. The HTML page and the Markdown summary are rendered from that one
# document, so the three files carry the same numbers. Rendering needs Jinja2 and matplotlib,
# imported only when a page is drawn: the rest of this file stays standard library.

NO_DATA = "no data"
VERDICTS = ("met", "missed", NO_DATA, "info")
# A KPI's verdict as a row of the verdict table the report role prints.
ROW_STATES = {"met": "healthy", "missed": "degraded", NO_DATA: "unknown", "info": "info"}
OPERATORS = {
    ">": (lambda value, target: value > target, ">"),
    ">=": (lambda value, target: value >= target, "≥"),
    "<": (lambda value, target: value < target, "<"),
    "<=": (lambda value, target: value <= target, "≤"),
    "==": (lambda value, target: value == target, "="),
}


def scrub_text(text, redactor=None):
    """text as a report may show it: card numbers, secrets and e-mail addresses masked by
    payops_mask (the one masking of payops), and the secrets `redactor` (a payops_redact.Redactor)
    has learned removed."""
    return mask_text(str(text), redactor)[0]


def scrub(value, redactor=None):
    """Every string inside `value` (dicts, lists, keys too) scrubbed; numbers and booleans kept."""
    if isinstance(value, dict):
        return {scrub_text(key, redactor): scrub(item, redactor) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [scrub(item, redactor) for item in value]
    if isinstance(value, str):
        return scrub_text(value, redactor)
    return value


def format_value(value, unit="", digits=1):
    """How a number is shown: NO_DATA for None, integers as they are, else `digits` decimals."""
    if value is None:
        return NO_DATA
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return f"{value}{(' ' + unit) if unit else ''}"
    text = f"{value:,}" if isinstance(value, int) else f"{value:,.{digits}f}"
    return f"{text.replace(',', ' ')}{(' ' + unit) if unit else ''}"


def kpi(name, value, unit="", target=None, op=None, detail="", digits=1, why_no_data=""):
    """One KPI against its target: {name, value, unit, display, target, op, target_display, verdict,
    detail}. value None is NO_DATA (never 0); no target (or op) is "info"."""
    if op is not None and op not in OPERATORS:
        raise ValueError(f"KPI {name!r}: op must be one of {', '.join(OPERATORS)}, got {op!r}")
    if value is None:
        verdict = NO_DATA
    elif target is None or op is None:
        verdict = "info"
    else:
        verdict = "met" if OPERATORS[op][0](value, target) else "missed"
    if isinstance(target, float) and target.is_integer():
        target = int(target)
    target_display = (f"{OPERATORS[op][1]} {format_value(target, unit, digits)}"
                      if target is not None and op is not None else "")
    return {
        "name": name, "value": value, "unit": unit, "display": format_value(value, unit, digits),
        "target": target, "op": op, "target_display": target_display, "verdict": verdict,
        "detail": detail or (why_no_data if value is None else ""),
    }


def kpi_rows(kpis):
    """The KPIs as the report role's verdict rows (component, state, value, target, detail)."""
    return [{"component": item["name"], "state": ROW_STATES[item["verdict"]], "value": item["display"],
             "target": item["target_display"] or "-", "detail": item["detail"]} for item in kpis]


def check_document(report):
    """The problems of a report document, as sentences (empty when it is well formed)."""
    problems = []
    for item in report.get("kpis", []):
        if item.get("verdict") not in VERDICTS:
            problems.append(f"KPI {item.get('name')!r} has verdict {item.get('verdict')!r}, not one of {VERDICTS}")
    for chart in report.get("charts", []):
        name = chart.get("title") or "a chart"
        for key in ("title", "x_label", "y_label"):
            if not chart.get(key):
                problems.append(f"{name} has no {key}")
        if chart.get("y_label") and "(" not in chart["y_label"]:
            problems.append(f"{name}: y_label {chart['y_label']!r} names no unit, e.g. 'success rate (%)'")
        if chart.get("target") is None:
            problems.append(f"{name} has no target to draw")
    for table in report.get("tables", []):
        width = len(table.get("columns", []))
        if any(len(row) != width for row in table.get("rows", [])):
            problems.append(f"table {table.get('title')!r}: a row has not {width} cells")
    return problems


def svg_chart(chart, index=0):
    """One chart as inline SVG (matplotlib, Agg): title, axes with units, the target as a dashed
    line; "no data" written on the plot when it has no point. Text is drawn as paths: no font."""
    import matplotlib

    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    points = list(chart.get("points", []))
    has_data = any(point[1] is not None for point in points)
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": f"payops-chart-{index}",
                                "font.size": 9}):
        figure, axes = plt.subplots(figsize=(7.5, 2.8), dpi=96)
        try:
            labels = [str(point[0]) for point in points]
            # A point without a value is a gap (no data), not a zero.
            values = [float("nan") if point[1] is None else point[1] for point in points]
            if has_data and chart.get("kind", "bar") == "bar":
                axes.bar(range(len(values)), values, color="#3b6ea8", label=chart.get("series_label") or None)
            elif has_data:
                axes.plot(range(len(values)), values, marker="o", color="#3b6ea8",
                          label=chart.get("series_label") or None)
            if points:
                step = max(1, len(labels) // 12)
                axes.set_xticks(range(0, len(labels), step), labels[::step])
                axes.set_xlim(-0.6, len(labels) - 0.4)
            if not has_data:
                axes.text(0.5, 0.5, NO_DATA, transform=axes.transAxes, ha="center", va="center", color="#777")
            target = chart.get("target")
            if target is not None:
                axes.axhline(target, color="#c0392b", linestyle="--", linewidth=1.2,
                             label=chart.get("target_label") or f"target {target:g}")
                axes.legend(loc="lower right", fontsize=8, frameon=False)
            axes.set_title(chart["title"])
            axes.set_xlabel(chart["x_label"])
            axes.set_ylabel(chart["y_label"])
            if chart.get("y_max") is not None:
                axes.set_ylim(chart.get("y_min", 0), chart["y_max"])
            axes.grid(axis="y", alpha=0.3)
            figure.tight_layout()
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        finally:
            plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg"):]


def render_html(report, template_text):
    """The report as one self-contained HTML page: `template_text` (Jinja2, autoescaped) with the
    document and its charts as inline SVG."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(autoescape=True, undefined=StrictUndefined,
                                       trim_blocks=True, lstrip_blocks=True)
    charts = [{**chart, "svg": svg_chart(chart, index)} for index, chart in enumerate(report.get("charts", []))]
    return environment.from_string(template_text).render(report=report, charts=charts, no_data=NO_DATA)


def render_markdown(report, template_text):
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    environment = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined,
                                       trim_blocks=True, lstrip_blocks=True)
    return environment.from_string(template_text).render(report=report, no_data=NO_DATA)


def report_document(title, name, period, kpis, tables=(), charts=(), summary="", details=None):
    """The JSON of a report: the verdict rows of its KPIs (for the report role's table) and its parts."""
    content = document(title, kpi_rows(kpis), details or {})
    content.update(name=name, period=period, kpis=list(kpis), tables=list(tables), charts=list(charts),
                   summary=summary)
    return content


def write_text(path, text, file_mode=0o640, dir_mode=0o750):
    """Write `text` to `path` atomically (a temporary file beside it, renamed over it), creating its
    folder; returns the path. The one writer of a report's files: JSON, HTML page, Markdown."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, mode=dir_mode, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".report-", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, file_mode)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
