"""Errors of the allocator package; `user_facing` ones are shown as one line by the CLI."""

from __future__ import annotations


class AllocatorError(Exception):
    """Base of errors the allocator raises on purpose (bad configuration, bad input)."""

    user_facing = True


class HospitalConfigError(AllocatorError):
    """A hospital file is missing, unreadable or invalid.

    The message names the file, the field path inside it and what is wrong, because the
    person fixing it is editing YAML by hand and needs to find the line.
    """

    def __init__(self, file: str, field: str | None, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        parts = [file] + ([field] if field else []) + [problem]
        super().__init__(": ".join(parts))


class PlanningInputError(AllocatorError):
    """An IHTC-format planning instance or solution file is missing, unreadable or invalid.

    Like `HospitalConfigError`, the message names the file, the field path inside it (for
    example `patients[12].surgeon_id`) and what is wrong.
    """

    def __init__(self, file: str, field: str | None, problem: str) -> None:
        self.file = file
        self.field = field
        self.problem = problem
        parts = [file] + ([field] if field else []) + [problem]
        super().__init__(": ".join(parts))


class PlanningInfeasibleError(AllocatorError):
    """The planner could not find a plan that meets every hard constraint in the time it had."""
