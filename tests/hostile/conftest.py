"""Hostile input: the property-based fuzzer over the API (``test_fuzz_api``) and malformed,
truncated, wrongly encoded and enormous import files (``test_hostile_imports``).

Shared here: the ``fuzz`` marker, the check of the one API error shape on any response object
(Django's, or the fuzzer's), and the row counts that a refused import must leave as they were."""

from __future__ import annotations

import json

import pytest


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "fuzz: property-based fuzzing of the API from its OpenAPI schema (bounded for CI)"
    )


def error_shape_problems(status: int, content: bytes) -> list[str]:
    """What is wrong with a 4xx body, measured against ``{"error": {"code", "message",
    "details"}}`` (``core.api``); an empty list when it is in the one shape."""
    try:
        body = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return [f"{status} body is not JSON: {content[:300]!r}"]
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return [f"{status} body is not {{'error': {{...}}}}: {content[:300]!r}"]
    error = body["error"]
    problems = []
    if set(error) != {"code", "message", "details"}:
        problems.append(f"error keys are {sorted(error)}, not code/message/details")
    if not isinstance(error.get("code"), str) or not error.get("code"):
        problems.append(f"error.code is {error.get('code')!r}")
    if not isinstance(error.get("message"), str) or not error.get("message"):
        problems.append(f"error.message is {error.get('message')!r}")
    if not isinstance(error.get("details"), list):
        problems.append(f"error.details is {error.get('details')!r}")
    return problems


def assert_error_shape(response, status: int | None = None, code: str | None = None) -> dict:
    """A Django test-client response in the one error shape; returns the ``error`` object."""
    if status is not None:
        assert response.status_code == status, response.content[:2000]
    problems = error_shape_problems(response.status_code, response.content)
    assert not problems, problems
    error = json.loads(response.content)["error"]
    if code is not None:
        assert error["code"] == code, error
    return error


def row_counts() -> dict[str, int]:
    """Every table an import or a usage batch writes to."""
    from core.models import AuditEntry, ImportRun
    from coupons.models import Application, Coupon, LedgerTransaction, Program, UsageBatch, UsageRecord
    from enterprises.models import Organisation, Provider

    models = [
        Organisation,
        Provider,
        Program,
        Application,
        Coupon,
        LedgerTransaction,
        UsageRecord,
        UsageBatch,
        ImportRun,
        AuditEntry,
    ]
    return {model.__name__: model.objects.count() for model in models}


@pytest.fixture
def unchanged():
    """``with unchanged(): ...`` asserts that the block wrote no row anywhere an import writes."""
    import contextlib

    @contextlib.contextmanager
    def check():
        before = row_counts()
        yield before
        assert row_counts() == before

    return check
