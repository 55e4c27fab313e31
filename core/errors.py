"""One family of errors for every service. The DRF exception handler (``core.api``) and the web
views turn any of them into the one error shape:

    {"error": {"code": "...", "message": "...", "details": [...]}}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class Problem:
    """One precise problem: where (line/index and column/field) and why."""

    reason: str
    line: int | None = None
    column: str | None = None

    def as_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if value is not None}

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column:
            where.append(f"column {self.column}")
        return f"{', '.join(where)}: {self.reason}" if where else self.reason


class ApplicationError(Exception):
    """A request the platform refuses, with a message for the user. ``status`` is the HTTP
    status the API answers with."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, details: list[Problem] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = str(message)
        self.details = list(details or [])
        if code:
            self.code = code

    def as_dict(self) -> dict:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "details": [problem.as_dict() for problem in self.details],
            }
        }


class ValidationFailed(ApplicationError):
    """Input that does not validate; ``details`` lists every problem found."""

    code = "validation_failed"
    status = 400


class NotPermitted(ApplicationError):
    code = "permission_denied"
    status = 403


class NotFound(ApplicationError):
    code = "not_found"
    status = 404


class Conflict(ApplicationError):
    """The request contradicts what is stored (a replayed key with another payload, a state
    that moved on)."""

    code = "conflict"
    status = 409
