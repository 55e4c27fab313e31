"""The application state machine: every (status, action) pair is either one of the TRANSITIONS
or refused with TransitionNotAllowed, and every transition leaves an audit entry."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.audit import audit_trail_for
from core.models import AuditEntry
from coupons.models import Application
from coupons.services.workflow import TRANSITIONS, TransitionNotAllowed, allowed_actions, transition
from tests.coupons.conftest import assert_error_shape, make_application, set_status, snapshot

S = Application.Status

EXPECTED = {
    # action: (from which statuses, to which status) -- written out, not read from the code
    "submit": ({S.DRAFT, S.RETURNED}, S.SUBMITTED),
    "start_review": ({S.SUBMITTED}, S.UNDER_REVIEW),
    "approve": ({S.UNDER_REVIEW}, S.APPROVED),
    "reject": ({S.SUBMITTED, S.UNDER_REVIEW}, S.REJECTED),
    "return": ({S.SUBMITTED, S.UNDER_REVIEW}, S.RETURNED),
    "withdraw": ({S.DRAFT, S.SUBMITTED, S.RETURNED}, S.WITHDRAWN),
}
PAIRS = [(status, action) for status in S.values for action in EXPECTED]
ALLOWED = [(status, action) for status, action in PAIRS if status in EXPECTED[action][0]]
REFUSED = [(status, action) for status, action in PAIRS if status not in EXPECTED[action][0]]


def test_the_table_in_the_code_is_the_documented_one():
    assert {action: (set(sources), target) for action, (sources, target) in TRANSITIONS.items()} == EXPECTED
    assert len(ALLOWED) == 11
    assert len(REFUSED) == len(S.values) * len(EXPECTED) - 11


@pytest.fixture
def draft(organisation, provider, program):
    return make_application(organisation=organisation, provider=provider, program=program, submit=False)


@pytest.mark.parametrize(("status", "action"), ALLOWED)
def test_an_allowed_transition_moves_the_application_and_audits_who_from_and_to(draft, reviewer, status, action):
    application = set_status(draft, status)
    if action == "approve":
        application.granted_amount = Decimal("1000.00")  # review_approve sets it before the transition
    entries_before = AuditEntry.objects.count()

    transition(application, action, actor=reviewer, reason="why not")

    application.refresh_from_db()
    target = EXPECTED[action][1]
    assert application.status == target
    assert AuditEntry.objects.count() == entries_before + 1
    entry = audit_trail_for(application).first()
    assert (entry.action, entry.from_state, entry.to_state) == (f"application.{action}", status, target)
    assert entry.actor == reviewer
    assert entry.actor_label == "reviewer"
    assert entry.reason == "why not"
    if action == "submit":
        assert application.submitted_at is not None
    if target in (S.APPROVED, S.REJECTED):
        assert application.decided_at is not None
    else:
        assert application.decided_at is None


@pytest.mark.parametrize(("status", "action"), REFUSED)
def test_a_refused_transition_raises_and_changes_nothing(draft, reviewer, status, action):
    application = set_status(draft, status)
    before = snapshot()

    with pytest.raises(TransitionNotAllowed) as caught:
        transition(application, action, actor=reviewer)

    assert caught.value.status == 409
    assert caught.value.code == "transition_not_allowed"
    assert application.get_status_display() in caught.value.message
    assert snapshot() == before


@pytest.mark.parametrize("status", S.values)
def test_allowed_actions_lists_exactly_the_transitions_out_of_a_status(draft, status):
    application = set_status(draft, status)

    assert set(allowed_actions(application)) == {
        action for action, (sources, _) in EXPECTED.items() if status in sources
    }


def test_an_unknown_action_is_a_programming_error(draft, reviewer):
    with pytest.raises(ValueError, match="unknown action"):
        transition(draft, "approve_twice", actor=reviewer)


def test_a_transition_by_the_system_is_audited_as_system(draft):
    transition(draft, "submit", actor=None)

    entry = audit_trail_for(draft).first()
    assert (entry.actor, entry.actor_label) == (None, "system")


@pytest.mark.parametrize(
    ("status", "endpoint"),
    [
        (S.APPROVED, "withdraw"),
        (S.UNDER_REVIEW, "withdraw"),
        (S.WITHDRAWN, "withdraw"),
        (S.APPROVED, "submit"),
        (S.REJECTED, "submit"),
        (S.UNDER_REVIEW, "submit"),
    ],
)
def test_a_refused_transition_is_a_409_in_the_api(client, owner, draft, status, endpoint):
    application = set_status(draft, status)
    client.force_login(owner)
    before = snapshot()

    response = client.post(f"/api/v1/applications/{application.reference}/{endpoint}/")

    assert_error_shape(response, 409, "transition_not_allowed")
    assert snapshot() == before


@pytest.mark.parametrize(("status", "endpoint"), [(S.APPROVED, "approve"), (S.REJECTED, "reject"), (S.DRAFT, "return")])
def test_a_refused_review_transition_is_a_409_in_the_api(client, reviewer, draft, status, endpoint):
    application = set_status(draft, status)
    client.force_login(reviewer)
    before = snapshot()

    response = client.post(
        f"/api/v1/applications/{application.reference}/{endpoint}/", {"reason": "no"}, content_type="application/json"
    )

    assert_error_shape(response, 409, "transition_not_allowed")
    assert snapshot() == before
