"""Errors of the inference package; `user_facing` ones are shown as one line by the CLI.

Messages name files, rows, fields and ids, never the free text of a patient.
"""

from __future__ import annotations


class InferenceError(Exception):
    """Base of errors the corpus, training, export and serving code raise on purpose."""

    user_facing = True


class ModelNotFoundError(InferenceError):
    """The model directory, or a file it must hold, does not exist."""


class ModelConfigError(InferenceError):
    """The model directory exists but its label config or metadata cannot be used."""


class TrainingDataError(InferenceError):
    """A training file cannot be used; names the file, the row (1-based) and the field."""

    def __init__(self, message: str, *, file: str | None = None, row: int | None = None,
                 field: str | None = None) -> None:
        self.file, self.row, self.field = file, row, field
        where = ", ".join(p for p in (
            f"file {file}" if file else "", f"row {row}" if row is not None else "",
            f"field {field!r}" if field else "") if p)
        super().__init__(f"{where}: {message}" if where else message)


class ExportMismatchError(InferenceError):
    """The exported graph disagrees with the PyTorch model beyond the tolerance."""

    def __init__(self, output: str, max_abs_diff: float, tolerance: float, detail: str = "") -> None:
        self.output, self.max_abs_diff, self.tolerance = output, float(max_abs_diff), float(tolerance)
        msg = (f"exported output {output!r} differs from PyTorch: max abs diff "
               f"{self.max_abs_diff:.3g} > tolerance {self.tolerance:.3g}")
        super().__init__(f"{msg} ({detail})" if detail else msg)


class ExportError(InferenceError):
    """Export or quantization failed for a reason other than a numeric mismatch."""


class RequestError(InferenceError):
    """One prediction request is invalid; names the id and the field, never the text."""

    def __init__(self, request_id: str, field: str, code: str, message: str) -> None:
        self.request_id, self.field, self.code = request_id, field, code
        super().__init__(f"request {request_id!r}: field {field!r}: {message}")


class FeedbackDataError(InferenceError):
    """A feedback file (the exported `feedback` topic) cannot be used at all: missing, or no usable record."""
