"""The pruning report: a versioned JSON document (``REPORT_SCHEMA``), its Markdown tables and a summary plot.

Example:
    >>> from tfmot_easiedge import report
    >>> r = report.build_report(model, slim_model, plan, analysis, budget="filters:0.5",
    ...                         importance="tbaa", stages=stages)  # doctest: +SKIP
    >>> report.write_report(r, "out/")  # doctest: +SKIP
"""
from typing import TYPE_CHECKING

from tfmot_easiedge._lazy import install_lazy_attributes

if TYPE_CHECKING:  # the lazy names below, for type checkers and IDEs (tests/test_lint.py checks the two agree)
    from tfmot_easiedge.report.build import build_report
    from tfmot_easiedge.report.files import FILES, read_report, write_report
    from tfmot_easiedge.report.markdown import render_markdown
    from tfmot_easiedge.report.plot import plot_report
    from tfmot_easiedge.report.schema import REPORT_FORMAT, REPORT_SCHEMA, REPORT_VERSION, validate_report

# Loaded on first use (PEP 562): building a report needs Keras, reading or writing one does not.
install_lazy_attributes(__name__, {
    "build_report": "tfmot_easiedge.report.build",
    **dict.fromkeys(["FILES", "read_report", "write_report"], "tfmot_easiedge.report.files"),
    "render_markdown": "tfmot_easiedge.report.markdown", "plot_report": "tfmot_easiedge.report.plot",
    **dict.fromkeys(["REPORT_FORMAT", "REPORT_SCHEMA", "REPORT_VERSION", "validate_report"],
                    "tfmot_easiedge.report.schema")}, [])

__all__ = ["FILES", "REPORT_FORMAT", "REPORT_SCHEMA", "REPORT_VERSION", "build_report", "plot_report", "read_report",
           "render_markdown", "validate_report", "write_report"]
