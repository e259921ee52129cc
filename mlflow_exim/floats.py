"""The JSON spelling of the doubles JSON has no number for: NaN and ±Infinity as the
strings "NaN", "Infinity" and "-Infinity". The bundle writes them so (see docs/FORMAT.md),
and so does MLflow's REST API (``message_to_json``), so one spelling serves both."""

from __future__ import annotations

import math
from typing import Any

NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def encode_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: Any) -> float:
    if isinstance(value, str):
        return NON_FINITE[value]
    return float(value)
