"""The main journeys in a real browser, each in English and in Chinese (switched with the
language selector in the header, which sets the ``django_language`` cookie):

1. an enterprise user signs in and applies;
2. a reviewer approves a large application in the admin, a second reviewer signs off, and the
   coupon shows in the enterprise's portal;
3. an auditor filters the applications and downloads the CSV;
4. the dashboards draw all their charts.

Each step leaves a screenshot in tests/screenshots/<step>-<language>.png. The GIVENs are made
with the services in the test's thread; the live server sees them (the tests are transactional;
``serialized_rollback`` restores the reference data of the data migrations afterwards)."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from decimal import Decimal

import pytest
from django.utils import translation

import coupons.services.applications
from audit.exports import header_row
from audit.lists import LISTS
from coupons.models import Application, Coupon
from coupons.services.review import review_approve
from fraud.scoring import score_program
from fraud.services import case_open
from tests import factories
from tests.coupons.conftest import make_application, make_program

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.usefixtures("no_trained_model"),
]

LANGUAGES = ["en", "zh-hans"]
PASSWORD = "pw-123456"  # tests/factories.make_user


def translated(language: str, text) -> str:
    with translation.override(language):
        return str(text)


def sign_in(new_context, user, language: str):
    """A new browser profile: the sign-in page, the language chosen in the header, then the
    user's credentials. Returns the page, signed in."""
    page = new_context().new_page()
    page.goto("/accounts/login/")
    if page.locator("html").get_attribute("lang") != language:
        with page.expect_navigation():
            page.select_option("#language-form select[name=language]", language)
    assert page.locator("html").get_attribute("lang") == language
    page.fill("#id_username", user.get_username())
    page.fill("#id_password", PASSWORD)
    with page.expect_navigation():
        page.click("main form button[type=submit]")
    assert "/accounts/login/" not in page.url, page.content()[:2000]
    return page


@contextlib.contextmanager
def scoring_deferred():
    """GIVENs are made without the scoring each submission queues (a pandas run per
    application, seconds in all); a test that wants scores calls ``score_program`` once."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(coupons.services.applications, "_queue_scoring", lambda application_id: None)
        yield


def given_application(**values) -> Application:
    with scoring_deferred():
        return make_application(**values)


@pytest.fixture
def enterprise(db):
    organisation = factories.make_organisation()
    return organisation, factories.make_portal_user(organisation, username="owner")


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_enterprise_user_applies(new_context, screenshot, enterprise, language):
    organisation, owner = enterprise
    program = make_program(code="BR-APPLY")
    provider = factories.make_provider()
    page = sign_in(new_context, owner, language)

    page.goto("/portal/applications/new/")
    page.select_option("#id_program", str(program.pk))
    page.select_option("#id_provider", str(provider.pk))
    page.select_option("#id_accelerator", label="NVIDIA A100 80GB")
    page.fill("#id_claimed_card_hours", "12000")
    page.fill("#id_claimed_amount", "108000.00")
    page.select_option("#id_scenario", "training")
    page.fill("#id_project_summary", "训练工业质检视觉模型，使用自有标注数据集，预计三个月。")
    with page.expect_navigation():
        page.click("#submit-application")

    application = Application.objects.get(organisation=organisation)
    assert page.url.endswith(f"/portal/applications/{application.reference}/")
    assert application.status == Application.Status.SUBMITTED
    assert (application.claimed_amount, application.provider) == (Decimal("108000.00"), provider)
    badge = page.locator("#application-status")
    assert badge.inner_text().strip() == translated(language, Application.Status.SUBMITTED.label)
    assert application.reference in page.locator("ul.messages").inner_text()
    screenshot(page, f"apply-{language}")


@pytest.mark.parametrize("language", LANGUAGES)
def test_two_reviewers_approve_a_large_application_in_the_admin(
    new_context, screenshot, enterprise, reviewer, second_reviewer, language
):
    organisation, owner = enterprise
    program = make_program(code="BR-REVIEW")  # a second review above 100,000.00
    application = given_application(
        organisation=organisation,
        provider=factories.make_provider(),
        program=program,
        claimed_amount=Decimal("600000.00"),
        claimed_card_hours=Decimal("60000.0000"),
    )
    change = f"/admin/coupons/application/{application.pk}/change/"

    first = sign_in(new_context, reviewer, language)
    first.goto(change)
    assert first.locator("#decision").is_visible()
    first.select_option("#decision select[name=decision]", "approve")
    assert first.input_value("#decision input[name=amount]") == "120000.00"  # 600,000 × 0.20
    with first.expect_navigation():
        first.click("#decision input[type=submit]")
    screenshot(first, f"review-{language}")
    application.refresh_from_db()
    assert application.status == Application.Status.UNDER_REVIEW
    assert application.reviews.count() == 1
    assert not Coupon.objects.exists()

    second = sign_in(new_context, second_reviewer, language)
    second.goto(change)
    second.select_option("#decision select[name=decision]", "approve")
    with second.expect_navigation():
        second.click("#decision input[type=submit]")
    screenshot(second, f"second-review-{language}")
    application.refresh_from_db()
    assert application.status == Application.Status.APPROVED
    coupon = Coupon.objects.get(application=application)
    assert coupon.face_value == Decimal("120000.00")
    assert coupon.code in second.locator(".messagelist").inner_text()

    portal = sign_in(new_context, owner, language)
    portal.goto("/portal/coupons/")
    assert portal.locator("#coupons tbody tr", has_text=coupon.code).count() == 1


@pytest.mark.parametrize("language", LANGUAGES)
def test_a_coupon_approved_by_two_reviewers_shows_in_the_enterprise_portal(
    new_context, screenshot, enterprise, reviewer, second_reviewer, language
):
    """The end of the journey above, its approvals made with the service (what the admin's
    decision form calls) while the form cannot be submitted from a browser."""
    organisation, owner = enterprise
    application = given_application(
        organisation=organisation,
        provider=factories.make_provider(),
        program=make_program(code="BR-COUPON"),
        claimed_amount=Decimal("600000.00"),
        claimed_card_hours=Decimal("60000.0000"),
    )
    assert review_approve(application=application, reviewer=reviewer).awaiting_second_review
    coupon = review_approve(application=application, reviewer=second_reviewer).coupon

    portal = sign_in(new_context, owner, language)
    portal.goto("/portal/coupons/")

    row = portal.locator("#coupons tbody tr", has_text=coupon.code)
    assert row.count() == 1
    assert "120000.00" in row.inner_text()
    assert translated(language, Coupon.State.ACTIVE.label) in row.inner_text()
    screenshot(portal, f"coupons-{language}")


def test_every_admin_action_form_posts_to_its_own_url(new_context, enterprise, reviewer, auditor):
    """Checked in the DOM: the form a browser submits when the action's button is pressed."""
    organisation, _owner = enterprise
    provider = factories.make_provider()
    application = given_application(organisation=organisation, provider=provider, program=make_program(code="BR-FORMS"))
    coupon = review_approve(application=application, reviewer=reviewer).coupon
    pending = given_application(
        organisation=factories.make_organisation(), provider=provider, program=application.program
    )
    case = case_open(application=application, actor=auditor)
    pages = [
        (f"/admin/coupons/application/{pending.pk}/change/", "#decision input[type=submit]", f"/{pending.pk}/decide/"),
        (f"/admin/coupons/coupon/{coupon.pk}/change/", "select[name=action]", f"/{coupon.pk}/state/"),
        (f"/admin/fraud/case/{case.pk}/change/", "select[name=finding]", f"/{case.pk}/work/"),
    ]
    page = sign_in(new_context, factories.make_user("chief", staff=True, is_superuser=True), "en")
    wrong = []
    for path, control, action in pages:
        page.goto(path)
        # The form's action attribute (a field named "action" shadows the property); none means
        # the page itself.
        target = page.eval_on_selector(
            control, "el => new URL(el.form.getAttribute('action') || '', document.baseURI).pathname"
        )
        if not target.endswith(action):
            wrong.append(f"{path}: submits to {target}")
    assert not wrong, "\n".join(wrong)


@pytest.fixture
def applications(reviewer):
    """Two approved and one submitted application in BR-AUDIT, one approved in BR-OTHER."""
    audited, other = make_program(code="BR-AUDIT"), make_program(code="BR-OTHER")
    provider = factories.make_provider()
    made = {}
    for name, program in [("a", audited), ("b", audited), ("c", audited), ("d", other)]:
        made[name] = given_application(organisation=factories.make_organisation(), provider=provider, program=program)
    score_program(audited)
    score_program(other)
    for name in ("a", "b", "d"):
        review_approve(application=made[name], reviewer=reviewer)
        made[name].refresh_from_db()
    return made


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_auditor_filters_the_applications_and_downloads_them(
    new_context, screenshot, applications, auditor, language, tmp_path
):
    page = sign_in(new_context, auditor, language)
    page.goto("/audit/applications/")
    assert page.locator("#audit-table tbody tr").count() == 4

    page.fill("#filters input[name=program]", "BR-AUDIT")
    page.select_option("#filters select[name=state]", "approved")
    with page.expect_navigation():
        page.click("#filters button[type=submit]")
    assert page.locator("#audit-table tbody tr").count() == 2
    screenshot(page, f"audit-filter-{language}")

    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert re.fullmatch(r"applications-\d{8}-\d{6}\.csv", download.suggested_filename)
    target = tmp_path / download.suggested_filename
    download.save_as(target)

    body = target.read_bytes()
    assert body.startswith(b"\xef\xbb\xbf")
    header, *rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"), newline="")))
    with translation.override(language):
        assert header == header_row(LISTS["applications"])
    assert sorted(row[0] for row in rows) == sorted(applications[name].reference for name in ("a", "b"))
    assert {row[LISTS["applications"].keys.index("status")] for row in rows} == {"approved"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_dashboards_draw_every_chart(new_context, screenshot, applications, auditor, language):
    page = sign_in(new_context, auditor, language)

    page.goto("/audit/dashboards/")
    page.wait_for_function("document.body.dataset.chartsReady === '8'")

    widths = page.eval_on_selector_all("canvas", "canvases => canvases.map(c => c.getBoundingClientRect().width)")
    assert len(widths) == 8
    assert all(width > 0 for width in widths), widths
    assert page.eval_on_selector_all("canvas", "cs => cs.every(c => c.width > 0 && c.height > 0)")
    screenshot(page, f"dashboards-{language}")
