"""calibration.json: the temperature and confidence threshold stored beside a student's weights and in an export.

The evaluate stage fits them on a held-out split and writes the file into the student folder; `gendistill export`
copies it into the export folder and its metadata.json; `StudentClassifier`, the ONNX `Predictor` and the server
read it here. Torch-free and stdlib-only, like gendistill.artifacts.inference, which imports it.

The file, all keys but `method` and `temperature` optional:

    {"method": "temperature", "temperature": 1.7, "fitted_on": "validation: 120 gold-labeled texts",
     "min_confidence": 0.82, "target_accuracy": 0.95, "accuracy_guarantee": 0.9, "coverage": 0.71}

`min_confidence` is the threshold chosen for `target_accuracy` on the held-out split (`coverage`: the share of it
answered), on the calibrated probabilities; absent when no threshold reached the target or none was fitted.
`accuracy_guarantee`, when the run set one, is the probability with which that threshold keeps the target.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

CALIBRATION_FILE = "calibration.json"
METHODS = ("temperature",)
STORED = "stored"  # `--min-confidence stored`: the threshold in calibration.json


class CalibrationError(ValueError):
    """calibration.json is unreadable or holds bad values, or a threshold is out of range; the message names the
    file or the value. A ValueError like ExportDirError: a deployment that uses `Predictor` alone sees it."""


@dataclass(frozen=True)
class Calibration:
    """What calibration.json holds (see the module docstring)."""

    temperature: float
    method: str = "temperature"
    fitted_on: str | None = None
    min_confidence: float | None = None
    target_accuracy: float | None = None
    accuracy_guarantee: float | None = None
    coverage: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Calibration:
        """Checked: a positive finite temperature, a known method, thresholds in (0, 1); else CalibrationError."""
        if not isinstance(data, dict):
            raise CalibrationError(f"{where}: expected a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise CalibrationError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        if data.get("method", "temperature") not in METHODS:
            raise CalibrationError(f"{where}: method {data.get('method')!r}: expected one of {', '.join(METHODS)}")
        temperature = data.get("temperature")
        if not _number(temperature) or not temperature > 0:
            raise CalibrationError(f"{where}: temperature must be a positive number, got {temperature!r}")
        for key in ("min_confidence", "target_accuracy", "accuracy_guarantee", "coverage"):
            value = data.get(key)
            if value is not None and (not _number(value) or not 0 <= value <= 1):
                raise CalibrationError(f"{where}: {key} must be a number in [0, 1], got {value!r}")
        if data.get("fitted_on") is not None and not isinstance(data["fitted_on"], str):
            raise CalibrationError(f"{where}: fitted_on must be a string")
        return cls(**data)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_calibration(directory: str | Path) -> Calibration | None:
    """The calibration stored in `directory` (a student or export folder), or None when it has no
    calibration.json (a model saved before calibration existed, or one whose run had no held-out split)."""
    path = Path(directory) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CalibrationError(f"{path}: cannot read ({error})") from None
    return Calibration.from_dict(data, str(path))


def write_calibration(directory: str | Path, calibration: Calibration) -> Path:
    """calibration.json into `directory`, atomically (a temporary file renamed into place; stdlib only, since
    gendistill.io pulls in pyarrow, which a deployment that imports this module may not have)."""
    path = Path(directory) / CALIBRATION_FILE
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp.write(json.dumps(calibration.to_dict(), indent=2) + "\n")
    os.replace(tmp.name, path)
    return path


def check_min_confidence(value: float, name: str = "min_confidence") -> float:
    """`value` when it is a threshold strictly inside (0, 1): 0 would defer nothing and 1 everything."""
    if not _number(value) or not 0 < value < 1:
        raise CalibrationError(f"{name} {value!r}: expected a number strictly between 0 and 1")
    return float(value)


def resolve_min_confidence(value: str, directory: str | Path, name: str = "--min-confidence") -> float:
    """A threshold given as text: a number in (0, 1), or `stored` for the one in `directory`'s calibration.json."""
    if value.strip().lower() == STORED:
        calibration = read_calibration(directory)
        if calibration is None or calibration.min_confidence is None:
            why = "no calibration.json" if calibration is None else "a calibration.json without min_confidence"
            raise CalibrationError(
                f"{name} stored: {directory} has {why} (its run had no held-out split, no threshold reached the "
                "target accuracy, or it was exported before calibration existed); pass a number in (0, 1)"
            )
        return calibration.min_confidence
    try:
        number = float(value)
    except ValueError:
        raise CalibrationError(f"{name} {value!r}: expected a number in (0, 1) or 'stored'") from None
    return check_min_confidence(number, name)
