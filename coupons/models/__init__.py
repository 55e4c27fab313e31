"""Models of the coupons app, one module per concern."""

from coupons.models.accelerators import Accelerator, normalize_model_name
from coupons.models.applications import Application, ApplicationMessage, Review
from coupons.models.coupons import Coupon
from coupons.models.ledger import Account, LedgerEntry, LedgerTransaction
from coupons.models.programs import Program, RiskBand

__all__ = [
    "Accelerator",
    "Account",
    "Application",
    "ApplicationMessage",
    "Coupon",
    "LedgerEntry",
    "LedgerTransaction",
    "Program",
    "Review",
    "RiskBand",
    "normalize_model_name",
]
