"""The pruning report's JSON format: ``REPORT_SCHEMA`` (JSON Schema, draft 2020-12) and ``validate_report``.

The format is versioned: ``version`` changes whenever a field is removed or changes meaning (adding an
optional field does not change it). Readers check ``format`` and ``version`` before anything else.
"""
from __future__ import annotations

from typing import Any, Mapping

from tfmot_easiedge.report._jsonschema import schema_errors

REPORT_FORMAT = "tfmot_easiedge.Report"
REPORT_VERSION = 1

_COUNT = {"type": "integer", "minimum": 0}
_OPT_COUNT = {"type": ["integer", "null"], "minimum": 0}
_SECONDS = {"type": "number", "minimum": 0}
_STRINGS = {"type": "array", "items": {"type": "string"}}


def _record(required: dict, optional: dict | None = None) -> dict:
    """An object with exactly these keys (the ``required`` ones always present)."""
    return {"type": "object", "required": list(required), "additionalProperties": False,
            "properties": {**required, **(optional or {})}}


REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "tfmot_easiedge pruning report",
    "description": "What a pruning run did to a model: filters, parameters, MACs, accuracy and latency per stage.",
    "type": "object",
    "required": ["format", "version", "created", "library_version", "model", "budget", "importance", "summary",
                 "groups", "layers", "skipped", "stages", "latency", "timings", "history"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": REPORT_FORMAT},
        "version": {"const": REPORT_VERSION},
        "created": {"type": "string", "description": "ISO 8601 UTC time the report was built"},
        "library_version": {"type": "string"},
        "model": _record({"name": {"type": "string"}, "slim_name": {"type": "string"},
                          "input_shape": {"type": "array", "items": {"type": ["integer", "null"]}},
                          "output_units": _OPT_COUNT}),
        "budget": {"type": "object", "required": ["kind"],
                   "properties": {"kind": {"type": "string"}, "ratio": {"type": "number"}}},
        "importance": {"type": "string"},
        "summary": {"$ref": "#/$defs/summary"},
        "groups": {"type": "array", "items": {"$ref": "#/$defs/group"}},
        "layers": {"type": "array", "items": {"$ref": "#/$defs/layer"}},
        "skipped": {"type": "array", "items": {"$ref": "#/$defs/skipped"}},
        "stages": {"type": "array", "items": {"$ref": "#/$defs/stage"}},
        "latency": {"type": "array", "items": {"$ref": "#/$defs/latency"}},
        "timings": {"type": "object", "additionalProperties": _SECONDS},
        "history": {"type": "object", "additionalProperties": {
            "type": "object", "additionalProperties": {"type": "array", "items": {"type": ["number", "null"]}}}},
        "data": {"type": "object", "description": "where the training/validation data came from (free form)"},
        "config": {"type": "object", "description": "the settings of the run (free form)"},
        "quantization": {"type": "array", "items": {"$ref": "#/$defs/quantization"},
                         "description": "int8 files: post-training (ptq) and quantization-aware trained (qat)"},
    },
    "$defs": {
        "summary": _record({
            "params_before": _COUNT, "params_after": _COUNT, "params_ratio": {"type": "number", "minimum": 0},
            "macs_before": _COUNT, "macs_after": _COUNT, "macs_ratio": {"type": "number", "minimum": 0},
            "prunable_filters_before": _COUNT, "prunable_filters_after": _COUNT,
            "filters_removed": _COUNT, "prunable_share": {"type": "number", "minimum": 0, "maximum": 1}}),
        "group": _record({
            "id": {"type": "string"}, "size": _COUNT, "kept": _COUNT, "prunable": {"type": "boolean"},
            "producers": _STRINGS, "members": _STRINGS, "reasons": _STRINGS, "approximate": {"type": "boolean"}}),
        "layer": _record({
            "name": {"type": "string"}, "class_name": {"type": "string"}, "group": {"type": ["string", "null"]},
            "prunable": {"type": "boolean"}, "filters_before": _OPT_COUNT, "filters_after": _OPT_COUNT,
            "params_before": _COUNT, "params_after": _COUNT, "macs_before": _COUNT, "macs_after": _COUNT}),
        "skipped": _record({
            "kind": {"enum": ["stop", "group"], "description": "a layer analysis stopped at, or an unprunable group"},
            "name": {"type": "string"}, "class_name": {"type": ["string", "null"]}, "layers": _STRINGS,
            "reason": {"type": "string"}}),
        "stage": _record({"stage": {"type": "string"}, "accuracy": {"type": ["number", "null"], "minimum": 0,
                                                                    "maximum": 1},
                          "macs": _COUNT, "params": _COUNT},
                         {"loss": {"type": ["number", "null"]},
                          "note": {"type": "string", "description": "what the stage did"},
                          "batchnorm": {"type": "string",
                                        "description": "'as trained' or 're-estimated on N training examples'"},
                          "accuracy_before_bn": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                                                 "description": "accuracy before BatchNorm re-estimation"}}),
        "quantization": _record({
            "method": {"enum": ["ptq", "qat"]}, "epochs": _COUNT,
            "accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                         "description": "top-1 of the int8 file (LiteRT)"},
            "float_accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "top1_agreement": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
            "size_bytes": _COUNT, "path": {"type": "string"}}),
        "latency": _record({
            "stage": {"type": "string"}, "runtime": {"type": "string"}, "threads": _COUNT, "batch_size": _COUNT,
            "median_ms": _SECONDS, "p10_ms": _SECONDS, "p90_ms": _SECONDS, "mean_ms": _SECONDS,
            "std_ms": _SECONDS, "runs": _COUNT}),
    },
}


def validate_report(report: Mapping) -> None:
    """Checks ``report`` against :data:`REPORT_SCHEMA`.

    Raises:
        ValueError: not a report, an unsupported version, or every way it breaks the schema (first ten).

    Example:
        >>> validate_report({"format": REPORT_FORMAT, "version": 99})
        Traceback (most recent call last):
        ...
        ValueError: report version 99 is not supported (this library reads version 1)
    """
    if not isinstance(report, Mapping) or report.get("format") != REPORT_FORMAT:
        raise ValueError(f"not a pruning report: expected a JSON object with format={REPORT_FORMAT!r}")
    if report.get("version") != REPORT_VERSION:
        raise ValueError(f"report version {report.get('version')!r} is not supported "
                         f"(this library reads version {REPORT_VERSION})")
    errors = schema_errors(report, REPORT_SCHEMA)
    if errors:
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        raise ValueError(f"invalid report: {'; '.join(errors[:10])}{more}")
