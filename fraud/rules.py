"""Named red flags. Each rule says what it looks at, has a weight (points towards the risk
score) and a threshold; both are editable data (``fraud.models.RiskRule``, seeded from
``DEFAULT_RULES`` on migrate). Each fired rule yields a sentence in zh-hans and en that says
what was seen, with the actual value ("registered 34 days before applying").

Rules are evaluated vectorised over the feature table of ``fraud.features``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

OPERATORS = {"<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


@dataclass(frozen=True)
class Rule:
    code: str
    feature: str
    operator: str  # one of OPERATORS
    threshold: float
    weight: int
    en: str  # {value} is the feature's value, formatted by ``fmt``
    zh: str
    fmt: str = "{:.0f}"
    # Only where this feature is non-zero (for example usage rules need usage).
    requires: str = ""


DEFAULT_RULES: list[Rule] = [
    Rule(
        "new_registration",
        "registration_age_days",
        "<",
        180,
        20,
        "registered {value} days before applying",
        "申请前 {value} 天才注册",
    ),
    Rule(
        "registered_after_opening",
        "registered_after_opening",
        ">=",
        1,
        10,
        "registered after the programme was announced",
        "在项目发布后才注册",
        "{:.0f}",
    ),
    Rule(
        "nobody_insured",
        "insured_employees",
        "<=",
        2,
        15,
        "only {value} social-insured employees",
        "参保人数仅 {value} 人",
    ),
    Rule("no_rd_staff", "rd_staff", "<=", 0, 10, "no R&D staff", "无研发人员"),
    Rule("team_elsewhere", "team_elsewhere", ">=", 1, 5, "core team outside the province", "核心团队不在本省"),
    Rule(
        "shared_address",
        "shared_address",
        ">=",
        3,
        5,
        "shares its registered address with {value} other organisations",
        "与另外 {value} 家单位共用注册地址",
    ),
    Rule(
        "shared_contact",
        "shared_phone",
        ">=",
        1,
        10,
        "shares its phone with {value} other organisations",
        "与另外 {value} 家单位共用联系电话",
    ),
    Rule(
        "shared_email",
        "shared_email",
        ">=",
        1,
        10,
        "shares its e-mail with {value} other organisations",
        "与另外 {value} 家单位共用邮箱",
    ),
    Rule(
        "shared_bank",
        "shared_bank",
        ">=",
        1,
        20,
        "shares its bank account with {value} other organisations",
        "与另外 {value} 家单位共用银行账户",
    ),
    Rule(
        "outside_digital_core",
        "outside_digital_core",
        ">=",
        1,
        10,
        "main business outside the digital-economy core",
        "主营业务不属于数字经济核心产业",
    ),
    Rule(
        "copy_paste_summary",
        "summary_similarity",
        ">=",
        0.7,
        25,
        "project summary {value} identical to another applicant's",
        "项目简介与其他申请人的相似度达 {value}",
        "{:.0%}",
    ),
    Rule(
        "subsidy_talk",
        "subsidy_talk",
        ">=",
        1.5,
        10,
        "the project summary talks about subsidies rather than the work ({value} mentions per 100 characters)",
        "项目简介侧重补贴而非项目本身（每百字 {value} 次）",
        "{:.1f}",
    ),
    Rule(
        "claimed_price_high",
        "claimed_price_ratio",
        ">=",
        1.8,
        15,
        "claims {value} times the reference price per card-hour",
        "申报单价为参考价的 {value} 倍",
        "{:.1f}",
    ),
    Rule(
        "usage_far_below_claim",
        "usage_ratio",
        "<",
        0.4,
        25,
        "metered usage is {value} of the claim to date",
        "计量用量仅为申报量（按期折算）的 {value}",
        "{:.0%}",
        requires="has_usage",
    ),
    Rule(
        "flat_usage",
        "flat_share",
        ">=",
        0.5,
        20,
        "{value} of the usage is flat 24-hour records",
        "{value} 的用量为整 24 小时均匀记录",
        "{:.0%}",
        requires="has_usage",
    ),
    Rule(
        "deadline_bunching",
        "deadline_share",
        ">=",
        0.5,
        15,
        "{value} more of the usage falls in the three weeks before the deadline than an even spread would",
        "截止前三周的用量比均匀分布多出 {value}",
        "{:.0%}",
        requires="has_usage",
    ),
    Rule(
        "billed_price_high",
        "billed_price_ratio",
        ">=",
        1.8,
        15,
        "billed {value} times the reference price per card-hour",
        "计费单价为参考价的 {value} 倍",
        "{:.1f}",
        requires="has_usage",
    ),
    Rule(
        "related_party",
        "related_direct",
        ">=",
        1,
        60,
        "shares {value} identity attributes (representative, phone, e-mail, address or bank account) with its provider",
        "与其算力服务商共用 {value} 项身份信息（法定代表人、电话、邮箱、地址或银行账户）",
    ),
    Rule(
        "related_indirectly",
        "related_indirect",
        ">=",
        1,
        20,
        "linked to its provider through other organisations' shared identities",
        "通过其他单位的共用身份信息与其服务商关联",
    ),
    Rule(
        "provider_concentration",
        "provider_district_share",
        ">=",
        0.6,
        5,
        "its provider serves {value} of its district's claims",
        "其服务商承接本区县 {value} 的申报",
        "{:.0%}",
    ),
    Rule(
        "earlier_fraud",
        "earlier_fraud",
        ">=",
        1,
        40,
        "{value} earlier applications were confirmed as fraud",
        "此前有 {value} 次申请被认定为骗补",
    ),
    Rule(
        "claimed_twice",
        "other_program_claim_match",
        ">=",
        1,
        15,
        "claims nearly the same amount in another programme without new usage",
        "在其他项目中申报了几乎相同的金额且无新增用量",
        "{:.0f}",
    ),
]
RULES_BY_CODE = {rule.code: rule for rule in DEFAULT_RULES}

# The department's three signals (domain.md §1), the baseline of ``evaluate_fraud``.
DEPARTMENT_SIGNALS = ("new_registration", "nobody_insured", "outside_digital_core", "usage_far_below_claim")
MAX_POINTS = 100


@dataclass(frozen=True)
class ActiveRule:
    rule: Rule
    threshold: float
    weight: int


def active_rules() -> list[ActiveRule]:
    """The rules with the thresholds and weights staff set (``RiskRule``); a rule without a row
    runs with its defaults, a disabled row switches the rule off."""
    from fraud.models import RiskRule

    settings = {row.code: row for row in RiskRule.objects.all()}
    active = []
    for rule in DEFAULT_RULES:
        row = settings.get(rule.code)
        if row is None:
            active.append(ActiveRule(rule, rule.threshold, rule.weight))
        elif row.enabled:
            active.append(ActiveRule(rule, float(row.threshold), row.weight))
    return active


def seed_rules(RiskRule) -> None:
    existing = set(RiskRule.objects.values_list("code", flat=True))
    RiskRule.objects.bulk_create(
        [
            RiskRule(code=r.code, weight=r.weight, threshold=Decimal(str(r.threshold)))
            for r in DEFAULT_RULES
            if r.code not in existing
        ]
    )


def evaluate(features, rules: list[ActiveRule] | None = None):
    """Return (fired, points): ``fired`` a DataFrame of booleans (one column per rule),
    ``points`` the capped sum of the weights of the fired rules per application."""
    import pandas as pd

    rules = active_rules() if rules is None else rules
    fired = pd.DataFrame(index=features.index)
    points = pd.Series(0, index=features.index, dtype=int)
    for active in rules:
        rule = active.rule
        values = features[rule.feature]
        hit = getattr(values, OPERATORS[rule.operator])(active.threshold).fillna(False)
        if rule.requires:
            hit &= features[rule.requires] > 0
        fired[rule.code] = hit.astype(bool)
        points += hit.astype(int) * active.weight
    return fired, points.clip(upper=MAX_POINTS)


def sentence(rule: Rule, value: float, language: str) -> str:
    from fraud.features import phrases

    en, zh = phrases(rule.fmt, rule.en, rule.zh, [value])[0]
    return zh if language.startswith("zh") else en


def reasons_for(row, fired_row, rules: list[ActiveRule]) -> list[dict]:
    """The fired rules of one application, heaviest first, with their sentences."""
    reasons = [
        {
            "code": a.rule.code,
            "weight": a.weight,
            "en": sentence(a.rule, row[a.rule.feature], "en"),
            "zh": sentence(a.rule, row[a.rule.feature], "zh"),
        }
        for a in rules
        if fired_row.get(a.rule.code, False)
    ]
    return sorted(reasons, key=lambda reason: -reason["weight"])
