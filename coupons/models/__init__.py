"""Models of the coupons app, one module per concern."""

from coupons.models.accelerators import Accelerator, normalize_model_name
from coupons.models.applications import Application, ApplicationMessage, Review
from coupons.models.coupons import Coupon
from coupons.models.ledger import Account, LedgerEntry, LedgerTransaction
from coupons.models.programs import Program, RiskBand
from coupons.models.redemptions import Redemption, RedemptionLine, ReferencePrice, Statement
from coupons.models.usage import UsageBatch, UsageRecord, UsageWeek

__all__ = [
    "Accelerator",
    "Account",
    "Application",
    "ApplicationMessage",
    "Coupon",
    "LedgerEntry",
    "LedgerTransaction",
    "Program",
    "Redemption",
    "RedemptionLine",
    "ReferencePrice",
    "Review",
    "RiskBand",
    "Statement",
    "UsageBatch",
    "UsageRecord",
    "UsageWeek",
    "normalize_model_name",
]
