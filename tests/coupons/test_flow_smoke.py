from decimal import Decimal

from coupons.ledger_check import check_ledger
from coupons.models import Application, Coupon
from coupons.services.review import review_approve


def test_an_approval_issues_a_coupon_and_the_ledger_balances(application, reviewer):
    outcome = review_approve(application=application, reviewer=reviewer)
    application.refresh_from_db()
    assert application.status == Application.Status.APPROVED
    assert application.granted_amount == Decimal("20000.00")  # 100,000 × 0.20
    coupon = Coupon.objects.get(application=application)
    assert outcome.coupon == coupon
    assert coupon.account.balance == Decimal("20000.00")
    report = check_ledger()
    assert report.ok, report.violations
