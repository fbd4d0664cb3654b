"""The pruning report: a versioned JSON document (``REPORT_SCHEMA``), its Markdown tables and a summary plot.

Example:
    >>> from tfmot_easiedge import report
    >>> r = report.build_report(model, slim_model, plan, analysis, budget="filters:0.5",
    ...                         importance="tbaa", stages=stages)  # doctest: +SKIP
    >>> report.write_report(r, "out/")  # doctest: +SKIP
"""
from tfmot_easiedge.report.build import build_report
from tfmot_easiedge.report.files import FILES, read_report, write_report
from tfmot_easiedge.report.markdown import render_markdown
from tfmot_easiedge.report.plot import plot_report
from tfmot_easiedge.report.schema import REPORT_FORMAT, REPORT_SCHEMA, REPORT_VERSION, validate_report

__all__ = ["FILES", "REPORT_FORMAT", "REPORT_SCHEMA", "REPORT_VERSION", "build_report", "plot_report", "read_report",
           "render_markdown", "validate_report", "write_report"]
