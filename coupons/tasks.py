"""Celery tasks of the coupons app: thin shells around the services."""

from celery import shared_task


@shared_task(acks_late=True, autoretry_for=(Exception,), retry_backoff=True, max_retries=5)
def expire_coupons() -> str:
    """Expire every coupon past its validity; the unspent balance returns to the budget. Running
    it twice changes nothing more."""
    from coupons.services.coupons import coupons_expire_due

    return f"expired {coupons_expire_due()}"
