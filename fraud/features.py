"""Features of applications, computed in bulk with pandas for all applications of a programme
at once (never a query per application). Each feature is a number; ``FEATURES`` documents them
and ``describe()`` turns a value into words for reviewers.

Sources: the registry (all organisations, for shared identities and relationships), the
applications of the programme (and earlier ones, for history), metered usage in the
programme's period (aggregated in SQL per enterprise, provider and card), reference prices.

How to add a signal: compute a column in ``build_features`` (vectorised), add it to
``FEATURES`` with its sentence, and, if it is a red flag by itself, a rule in ``rules.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from django.utils import timezone

FLAT_HOURS = 24
DEADLINE_DAYS = 21
DEADLINE_WEEKS = DEADLINE_DAYS // 7
SHARE_CAP = 50  # an attribute value shared by more organisations than this is generic (a park)
SUBSIDY_TERMS = r"补贴|补助|算力券|申报|政策|扶持|奖励|资金支持|兑付|额度|免费|薅"
WORK_TERMS = r"模型|训练|推理|数据集|算法|参数|准确率|样本|标注|微调|部署|客户|产品|检测|识别|预测|实验|精度|吞吐"

# Cities of a province by the first two digits of the region code (GB/T 2260), to tell whether
# the core team sits in the province the company is registered in.
PROVINCE_CITIES = {
    "34": {
        "合肥",
        "芜湖",
        "蚌埠",
        "淮南",
        "马鞍山",
        "淮北",
        "铜陵",
        "安庆",
        "黄山",
        "滁州",
        "阜阳",
        "宿州",
        "六安",
        "亳州",
        "池州",
        "宣城",
    },
}


@dataclass(frozen=True)
class Feature:
    name: str
    en: str  # "{value}" is replaced by the formatted value
    zh: str
    fmt: str = "{:.0f}"


FEATURES: list[Feature] = [
    Feature("registration_age_days", "registered {value} days before applying", "申请前 {value} 天注册"),
    Feature("registered_after_opening", "registered after the programme opened", "在项目开放申报后注册", "{:.0f}"),
    Feature("paid_in_capital_log", "paid-in capital of about 10^{value} yuan", "实缴资本约 10^{value} 元", "{:.1f}"),
    Feature("paid_in_zero", "no paid-in capital", "实缴资本为零"),
    Feature("insured_employees", "{value} social-insured employees", "社保缴纳人数 {value} 人"),
    Feature("rd_staff", "{value} R&D staff", "研发人员 {value} 人"),
    Feature("rd_share", "R&D staff are {value} of the insured employees", "研发人员占参保人数 {value}", "{:.0%}"),
    Feature("team_elsewhere", "the core team works outside the province", "核心团队不在本省"),
    Feature(
        "shared_address",
        "{value} other organisations share its registered address",
        "另有 {value} 家单位使用相同注册地址",
    ),
    Feature("shared_phone", "{value} other organisations share its phone", "另有 {value} 家单位使用相同电话"),
    Feature("shared_email", "{value} other organisations share its e-mail", "另有 {value} 家单位使用相同邮箱"),
    Feature("shared_bank", "{value} other organisations share its bank account", "另有 {value} 家单位使用相同银行账户"),
    Feature(
        "shared_legal_rep",
        "{value} other organisations share its legal representative",
        "另有 {value} 家单位使用相同法定代表人",
    ),
    Feature(
        "outside_digital_core",
        "its industry is outside the digital-economy core",
        "所属行业不在数字经济核心产业范围内",
        "{:.1f}",
    ),
    Feature(
        "summary_similarity",
        "its project summary is {value} similar to another applicant's",
        "项目简介与其他申请人相似度 {value}",
        "{:.0%}",
    ),
    Feature(
        "subsidy_talk",
        "its project summary talks about subsidies {value} times per 100 characters",
        "项目简介每百字提及补贴 {value} 次",
        "{:.1f}",
    ),
    Feature(
        "work_talk",
        "its project summary names the work {value} times per 100 characters",
        "项目简介每百字提及具体工作 {value} 次",
        "{:.1f}",
    ),
    Feature(
        "claimed_price_ratio",
        "it claims {value} times the reference price per card-hour",
        "申报单价为参考价的 {value} 倍",
        "{:.1f}",
    ),
    Feature(
        "claim_per_employee_log",
        "it claims about 10^{value} yuan per insured employee",
        "人均申报金额约 10^{value} 元",
        "{:.1f}",
    ),
    Feature("has_usage", "metered usage has been reported", "已有计量用量数据"),
    Feature("elapsed_fraction", "{value} of its compute period has elapsed", "算力使用期已过 {value}", "{:.0%}"),
    Feature(
        "usage_ratio",
        "metered card-hours are {value} of the claim pro-rated to date",
        "计量卡时为按期折算申报量的 {value}",
        "{:.0%}",
    ),
    Feature(
        "flat_share", "{value} of its usage is flat 24-hour records", "{value} 的用量为整 24 小时的均匀记录", "{:.0%}"
    ),
    Feature(
        "round_amount_share",
        "{value} of its usage records bill round amounts",
        "{value} 的用量记录金额为整百",
        "{:.0%}",
    ),
    Feature(
        "deadline_share",
        "{value} more of its usage falls in the last three weeks before the deadline than an even spread would put there",
        "截止前三周的用量比均匀分布多出 {value}",
        "{:.0%}",
    ),
    Feature(
        "night_share",
        "{value} of its jobs start between midnight and 6 a.m.",
        "{value} 的作业在零点至六点开始",
        "{:.0%}",
    ),
    Feature("weekend_share", "{value} of its jobs start at weekends", "{value} 的作业在周末开始", "{:.0%}"),
    Feature(
        "billed_price_ratio",
        "it was billed {value} times the reference price per card-hour",
        "计费单价为参考价的 {value} 倍",
        "{:.1f}",
    ),
    Feature(
        "provider_usage_share",
        "{value} of its metered usage is with this provider",
        "{value} 的计量用量来自该服务商",
        "{:.0%}",
    ),
    Feature(
        "provider_district_share",
        "its provider serves {value} of the claims of its district",
        "该服务商承接本区县 {value} 的申报",
        "{:.0%}",
    ),
    Feature(
        "related_direct", "shares {value} identity attributes with its provider", "与其服务商共用 {value} 项身份信息"
    ),
    Feature("related_indirect", "is linked to its provider through other organisations", "通过其他单位与其服务商关联"),
    Feature("earlier_applications", "{value} earlier applications", "此前申请 {value} 次"),
    Feature("earlier_fraud", "{value} earlier applications confirmed as fraud", "此前 {value} 次申请被认定骗补"),
    Feature(
        "other_program_claim_match",
        "claims nearly the same in another programme without new usage",
        "在其他项目中申报了几乎相同的内容",
        "{:.0f}",
    ),
]
FEATURE_NAMES = [feature.name for feature in FEATURES]
FEATURE_BY_NAME = {feature.name: feature for feature in FEATURES}


def describe(name: str, value: float, language: str = "en") -> str:
    feature = FEATURE_BY_NAME[name]
    en, zh = phrases(feature.fmt, feature.en, feature.zh, [value])[0]
    return zh if language.startswith("zh") else en


def phrases(fmt: str, en: str, zh: str, values) -> list[tuple[str, str]]:
    """The English and Chinese sentence for each value: ``{value}`` in the templates replaced
    by the value formatted with ``fmt`` (a value ``fmt`` cannot format is written as it is).
    Sentences of the same formatted value are made once."""
    made: dict[str, tuple[str, str]] = {}
    result = []
    for value in values:
        try:
            text = fmt.format(value)
        except (ValueError, TypeError):
            text = str(value)
        pair = made.get(text)
        if pair is None:
            pair = made[text] = (en.replace("{value}", text), zh.replace("{value}", text))
        result.append(pair)
    return result


# --- inputs --------------------------------------------------------------------------------


def _normalised(series):
    """Identity values compared without case or white space (a comprehension: pandas' string
    methods take several passes)."""
    import pandas as pd

    return pd.Series(
        ["".join(value.split()).lower() if isinstance(value, str) else "" for value in series], index=series.index
    )


def _registry():
    """All organisations with identity attributes, their industry flags, and the counts of
    other organisations sharing each attribute."""
    import numpy as np

    from core.frames import read_frame

    columns = [
        "id",
        "registration_date",
        "paid_in_capital",
        "registered_capital",
        "social_insured_employees",
        "rd_staff",
        "core_team_city",
        "region_code",
        "registered_address",
        "contact_phone",
        "contact_email",
        "bank_account",
        "legal_representative",
        "industry__digital_core",
        "industry__digital_scope",
        "industry_id",
    ]
    orgs = read_frame(
        "SELECT o.id, CAST(o.registration_date AS text), CAST(o.paid_in_capital AS float8), "
        "CAST(o.registered_capital AS float8), o.social_insured_employees, o.rd_staff, o.core_team_city, "
        "o.region_code, o.registered_address, o.contact_phone, o.contact_email, o.bank_account, "
        "o.legal_representative, i.digital_core, i.digital_scope, o.industry_id "
        "FROM enterprises_organisation AS o JOIN enterprises_industryclass AS i ON i.code = o.industry_id",
        [],
        columns,
        dtypes={"paid_in_capital": float, "registered_capital": float},
    )
    orgs["industry__digital_core"] = orgs["industry__digital_core"].astype(bool)
    attributes = {
        "shared_address": "registered_address",
        "shared_phone": "contact_phone",
        "shared_email": "contact_email",
        "shared_bank": "bank_account",
        "shared_legal_rep": "legal_representative",
    }
    for feature, column in attributes.items():
        key = _normalised(orgs[column])
        orgs[column] = key
        counts = key.map(key.value_counts())
        orgs[f"{column}_holders"] = counts  # organisations with this value (empty values included)
        orgs[feature] = np.where(key == "", 0, counts - 1)
    return orgs, list(attributes.values())


@dataclass
class Context:
    """What the features of every programme read besides the programme itself: the registry
    (with the counts of shared identity values and the relationship components) and the
    history of applications and fraud verdicts. ``load_context()`` reads it; scoring several
    programmes reads it once."""

    orgs: object  # DataFrame, one row per organisation
    identity_columns: list[str]
    components: object  # Series: organisation id → component
    history: object  # DataFrame: every application (id, organisation_id, program_id, opens, status, claimed_amount)
    frauds: set[int]  # applications confirmed as fraud


def load_context() -> Context:
    import pandas as pd

    from core.frames import read_frame
    from fraud.models import Outcome

    orgs, identity_columns = _registry()
    history = read_frame(
        "SELECT a.id, a.organisation_id, a.program_id, p.opens, a.status, CAST(a.claimed_amount AS float8) "
        "FROM coupons_application AS a JOIN coupons_program AS p ON p.id = a.program_id",
        [],
        ["id", "organisation_id", "program_id", "opens", "status", "claimed_amount"],
        dtypes={"status": str, "claimed_amount": float},
    )
    history["opens"] = pd.to_datetime(history["opens"]).dt.date
    frauds = set(Outcome.objects.filter(verdict=Outcome.Verdict.FRAUD).values_list("application_id", flat=True))
    return Context(orgs, identity_columns, _components(orgs, identity_columns), history, frauds)


def _components(orgs, columns: list[str]):
    """Connected components of organisations linked by a shared identity attribute (ignoring
    values shared by more than SHARE_CAP organisations)."""
    import numpy as np
    import pandas as pd
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(orgs)
    rows, cols, offset = [], [], n
    for column in columns:
        values = orgs[column]
        counts = orgs[f"{column}_holders"]  # counted by _registry
        keep = ((values != "") & (counts > 1) & (counts <= SHARE_CAP)).to_numpy()
        codes, _uniques = pd.factorize(values[keep])
        rows.append(np.flatnonzero(keep))
        cols.append(codes + offset)
        offset += len(_uniques)
    if offset == n:
        return pd.Series(np.arange(n), index=orgs["id"])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(offset, offset))
    _count, labels = connected_components(graph, directed=False)
    return pd.Series(labels[:n], index=orgs["id"])


PERMUTATIONS, BAND_ROWS = 32, 4  # MinHash signature length; rows per LSH band


def minhash_signatures(texts: list[str]):
    """Character 3-gram MinHash signatures (``PERMUTATIONS`` 64-bit values per text; an empty
    text has all values at the maximum)."""
    import numpy as np
    from sklearn.feature_extraction.text import HashingVectorizer

    signatures = np.full((len(texts), PERMUTATIONS), np.iinfo(np.uint64).max, dtype=np.uint64)
    if not texts:
        return signatures
    matrix = (
        HashingVectorizer(
            analyzer="char",
            ngram_range=(3, 3),
            n_features=2**22,
            binary=True,
            norm=None,
            alternate_sign=False,
            lowercase=False,
        )
        .transform(texts)
        .tocsr()
    )
    rng = np.random.default_rng(20261128)
    a = rng.integers(1, 2**61, size=PERMUTATIONS, dtype=np.uint64) | np.uint64(1)
    b = rng.integers(0, 2**61, size=PERMUTATIONS, dtype=np.uint64)
    nonempty = np.diff(matrix.indptr) > 0
    starts = matrix.indptr[:-1][nonempty]
    indices = matrix.indices.astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(PERMUTATIONS):
            hashed = (indices * a[j] + b[j]) >> np.uint64(20)
            signatures[nonempty, j] = np.minimum.reduceat(hashed, starts)
    return signatures


def _digest(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()


def summary_signatures(program_id: int, application_ids, texts: list[str]):
    """The signatures of these applications' (whitespace-normalised) summaries, all of one
    programme: those stored in ``SummarySignature`` for the same text are read, the others
    computed and stored."""
    import numpy as np
    import pandas as pd

    from core.frames import read_frame
    from fraud.models import SummarySignature

    ids = [int(pk) for pk in application_ids]
    digests = [_digest(text) for text in texts]
    stored = read_frame(
        "SELECT s.application_id, s.digest, s.signature FROM fraud_summarysignature AS s "
        "JOIN coupons_application AS a ON a.id = s.application_id WHERE a.program_id = %s",
        [program_id],
        ["application_id", "digest", "signature"],
    )
    # Line the stored rows up with the applications; a row counts where its digest is the text's.
    position = pd.Series(np.arange(len(ids)), index=ids)
    stored = stored[stored["application_id"].isin(position.index)]
    at = position.loc[stored["application_id"]].to_numpy()
    usable = stored["digest"].to_numpy() == np.asarray(digests, dtype=object)[at]
    signatures = np.empty((len(ids), PERMUTATIONS), dtype=np.uint64)
    found = np.zeros(len(ids), dtype=bool)
    if usable.any():
        blob = b"".join(bytes(value) for value in stored["signature"].to_numpy()[usable])
        signatures[at[usable]] = np.frombuffer(blob, dtype="<u8").reshape(-1, PERMUTATIONS)
        found[at[usable]] = True
    missing = np.flatnonzero(~found).tolist()
    if missing:
        computed = minhash_signatures([texts[i] for i in missing])
        signatures[missing] = computed
        SummarySignature.objects.bulk_create(
            [
                SummarySignature(
                    application_id=ids[i], digest=digests[i], signature=computed[k].astype("<u8").tobytes()
                )
                for k, i in sorted(enumerate(missing), key=lambda item: ids[item[1]])
            ],
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["application"],
            update_fields=["digest", "signature"],
        )
    return signatures


def _summary_similarity(texts, owners, application_ids=None, program_id=None):
    """For each text, the highest estimated Jaccard similarity (character 3-gram MinHash with
    LSH) to a text of another organisation. With ``program_id`` and ``application_ids``, the
    signatures come from (and go to) ``SummarySignature``."""
    import numpy as np

    n = len(texts)
    best = np.zeros(n)
    if n < 2:
        return best
    cleaned = [" ".join(str(t).split()) for t in texts]
    if program_id is None:
        signatures = minhash_signatures(cleaned)
    else:
        signatures = summary_signatures(program_id, application_ids, cleaned)
    nonempty = np.array([bool(text) for text in cleaned])
    pairs = _candidate_pairs(signatures, nonempty)
    owners = np.asarray(owners)
    pairs = pairs[owners[pairs[:, 0]] != owners[pairs[:, 1]]]
    if len(pairs) == 0:
        return best
    # The estimate: the share of equal values. Compared on their low 32 bits (a false equality
    # has odds of 2^-32) and in chunks, to keep the copies small.
    low = signatures.astype(np.uint32)
    similarity = np.empty(len(pairs))
    for start in range(0, len(pairs), 1 << 18):
        chunk = pairs[start : start + (1 << 18)]
        similarity[start : start + len(chunk)] = (low[chunk[:, 0]] == low[chunk[:, 1]]).sum(axis=1) / PERMUTATIONS
    np.maximum.at(best, pairs[:, 0], similarity)
    np.maximum.at(best, pairs[:, 1], similarity)
    return best


BUCKET_CAP = 2000  # members of one LSH bucket compared pairwise (a bigger bucket is one text, copied)


def _candidate_pairs(signatures, usable):
    """Pairs of rows (i < j) that agree on all rows of at least one LSH band, without
    repetition, among the ``usable`` rows. Vectorised: rows are sorted by band key, and the
    buckets of each size are paired at once."""
    import numpy as np
    import pandas as pd

    n = len(signatures)
    rows = np.flatnonzero(usable)
    found = []
    for band in range(PERMUTATIONS // BAND_ROWS):
        block = signatures[rows, band * BAND_ROWS : (band + 1) * BAND_ROWS]
        keys = pd.util.hash_array(block[:, 0])
        for k in range(1, BAND_ROWS):
            keys ^= pd.util.hash_array(block[:, k]) * np.uint64(2 * k + 1)
        order = np.argsort(keys, kind="stable")
        ordered_keys, ordered_rows = keys[order], rows[order]
        starts = np.flatnonzero(np.r_[True, ordered_keys[1:] != ordered_keys[:-1]])
        sizes = np.diff(np.r_[starts, len(ordered_keys)])
        for size in np.unique(sizes[sizes > 1]):
            kept = min(int(size), BUCKET_CAP)
            members = ordered_rows[starts[sizes == size][:, None] + np.arange(kept)]
            left, right = np.triu_indices(kept, k=1)
            first, second = members[:, left].ravel(), members[:, right].ravel()
            found.append(np.minimum(first, second) * n + np.maximum(first, second))
    if not found:
        return np.empty((0, 2), dtype=np.int64)
    codes = np.sort(np.concatenate(found))  # then without repeats (np.unique's hashing is slower)
    codes = codes[np.r_[True, codes[1:] != codes[:-1]]]
    return np.stack([codes // n, codes % n], axis=1)


def _reference_prices(program, usage):
    """Price per card-hour per card: the staff's latest dated reference price up to the
    programme's close, else the median of providers' average billed prices in the period. Only
    positive prices count (a free card has no price to compare with)."""
    import pandas as pd

    from coupons.models import ReferencePrice

    prices = {}
    for accelerator_id, price in (
        ReferencePrice.objects.filter(valid_from__lte=program.closes, price_per_card_hour__gt=0)
        .order_by("accelerator_id", "-valid_from")
        .values_list("accelerator_id", "price_per_card_hour")
    ):
        prices.setdefault(accelerator_id, float(price))
    if len(usage):
        by_provider = usage.groupby(["accelerator_id", "provider_id"])[["amount", "card_hours"]].sum()
        average = (by_provider["amount"] / by_provider["card_hours"]).groupby(level=0).median()
        average = average[average > 0]
        for accelerator_id, price in average.items():
            prices.setdefault(accelerator_id, float(price))
    return pd.Series(prices, dtype=float)


def usage_window(program, today: dt.date) -> tuple[dt.date, dt.date]:
    """Usage that can back a programme's claims: from its opening until its coupons' validity
    ends (or today)."""
    return program.opens, min(today, program.closes + dt.timedelta(days=program.validity_days))


def _monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def deadline_weeks(program, today: dt.date) -> tuple[dt.date, dt.date]:
    """The last three weeks before the deadline (before today, while the programme is open),
    as the Mondays of the first and the last: the three local weeks ending with the one that
    holds the deadline."""
    last = _monday(min(program.closes, today))
    return last - dt.timedelta(weeks=DEADLINE_WEEKS - 1), last


def _window_weeks(program, today: dt.date) -> tuple[dt.date, dt.date]:
    """The usage window counted in whole weeks: from the Monday of the week of the programme's
    opening to the window's last day (the week of which starts on or before it)."""
    first, last = usage_window(program, today)
    return _monday(first), last


USAGE_SUMS = [
    "records",
    "card_hours",
    "amount",
    "flat_hours",
    "round_records",
    "deadline_hours",
    "night_records",
    "weekend_records",
]


_USAGE_SQL = """
SELECT k.app_row, w.accelerator_id, CASE WHEN w.provider_id = k.provider_id THEN 1 ELSE 0 END,
       SUM(w.records),
       CAST(SUM(w.card_hours) AS float8), CAST(SUM(w.amount) AS float8), CAST(SUM(w.flat_card_hours) AS float8),
       SUM(w.round_records),
       CAST(SUM(CASE WHEN w.week >= %s AND w.week <= %s THEN w.card_hours ELSE 0 END) AS float8),
       SUM(w.night_records), SUM(w.weekend_records)
  FROM {keys} AS k
  JOIN coupons_usageweek AS w ON w.enterprise_id = k.enterprise_id AND w.week >= k.since
 WHERE w.week >= %s AND w.week <= %s
 GROUP BY k.app_row, w.accelerator_id, CASE WHEN w.provider_id = k.provider_id THEN 1 ELSE 0 END
"""


def _usage(program, today: dt.date, keys):
    """Metered usage behind each application, summed in one SQL join of the applications with
    the weekly sums (``coupons.UsageWeek``, kept by ingestion) over the programme's window. ``keys``: one row per
    application with ``app_row``, ``enterprise_id``, ``provider_id`` and ``since`` (the first week
    that counts). Returns the sums per application and card at its provider (``USAGE_SUMS``,
    with ``deadline_hours`` in the last three weeks before the deadline) and the card-hours per
    application at all providers."""
    from core.frames import read_frame, temporary_table

    first, last = _window_weeks(program, today)
    begin, end = deadline_weeks(program, today)
    columns = {"app_row": "integer", "enterprise_id": "bigint", "provider_id": "bigint", "since": "date"}
    with temporary_table("fraud_feature_keys", columns, keys) as table:
        sums = read_frame(
            _USAGE_SQL.format(keys=table),
            [begin, end, first, last],
            ["app_row", "accelerator_id", "at_provider", *USAGE_SUMS],
            dtypes={"card_hours": float, "amount": float, "flat_hours": float, "deadline_hours": float},
        )
    per_enterprise = sums.groupby("app_row")["card_hours"].sum()
    return sums[sums["at_provider"] == 1].drop(columns="at_provider"), per_enterprise


def _provider_sums(program, today: dt.date):
    """Amount billed and card-hours per card and provider in the programme's window (for the
    median billed price where staff set no reference price)."""
    from core.frames import read_frame

    first, last = _window_weeks(program, today)
    return read_frame(
        "SELECT accelerator_id, provider_id, CAST(SUM(amount) AS float8), CAST(SUM(card_hours) AS float8) "
        "FROM coupons_usageweek WHERE week >= %s AND week <= %s GROUP BY accelerator_id, provider_id",
        [first, last],
        ["accelerator_id", "provider_id", "amount", "card_hours"],
        dtypes={"amount": float, "card_hours": float},
    )


# --- the table -----------------------------------------------------------------------------


def build_features(
    program, *, today: dt.date | None = None, context: Context | None = None, only: list[int] | None = None
):
    """One row per application of ``program`` (index: application id) with every feature of
    ``FEATURES``, plus ``reference`` and ``organisation_id`` for reporting. ``context``: the
    registry and history already read (``load_context``), when scoring several programmes.
    ``only``: the applications wanted (a chunk of a rescore): the whole programme is still read
    for the comparisons between applicants, but usage is summed for these alone, and only their
    rows are returned."""
    import numpy as np
    import pandas as pd

    from core.frames import read_frame

    today = today or timezone.localdate()
    apps = read_frame(
        "SELECT a.id, a.reference, a.organisation_id, a.provider_id, p.organisation_id, a.accelerator_id, "
        "CAST(a.claimed_card_hours AS float8), CAST(a.claimed_amount AS float8), CAST(a.submitted_at AS text), "
        "CAST(a.decided_at AS text), CAST(a.created_at AS text), a.status, a.project_summary "
        "FROM coupons_application AS a JOIN enterprises_provider AS p ON p.id = a.provider_id "
        "WHERE a.program_id = %s ORDER BY a.id",
        [program.pk],
        [
            "id",
            "reference",
            "organisation_id",
            "provider_id",
            "provider_org_id",
            "accelerator_id",
            "claimed_card_hours",
            "claimed_amount",
            "submitted_at",
            "decided_at",
            "created_at",
            "status",
            "project_summary",
        ],
        dtypes={
            "reference": str,
            "claimed_card_hours": float,
            "claimed_amount": float,
            "submitted_at": str,
            "decided_at": str,
            "created_at": str,
            "status": str,
            "project_summary": str,
        },
    )
    if apps.empty:
        return pd.DataFrame(columns=["reference", "organisation_id", *FEATURE_NAMES])
    applied = pd.to_datetime(apps["submitted_at"].fillna(apps["created_at"]), utc=True, format="ISO8601").dt.tz_convert(
        timezone.get_current_timezone()
    )
    applied_day = applied.dt.tz_localize(None).dt.normalize()

    context = context or load_context()
    orgs, identity_columns = context.orgs, context.identity_columns
    org = orgs.set_index("id")
    applicant = org.loc[apps["organisation_id"]].reset_index(drop=True)
    provider_org = org.loc[apps["provider_org_id"]].reset_index(drop=True)

    features = pd.DataFrame(index=apps.index)
    registered = pd.to_datetime(applicant["registration_date"])
    features["registration_age_days"] = (applied_day - registered).dt.days.clip(lower=0)
    features["registered_after_opening"] = (registered >= pd.Timestamp(program.opens)).astype(float)
    paid = applicant["paid_in_capital"].astype(float)
    features["paid_in_capital_log"] = np.log10(paid + 1)
    features["paid_in_zero"] = (paid <= 0).astype(float)
    insured = applicant["social_insured_employees"].astype(float)
    rd = applicant["rd_staff"].astype(float)
    features["insured_employees"] = insured
    features["rd_staff"] = rd
    features["rd_share"] = (rd / insured.clip(lower=1)).clip(upper=1)
    province = applicant["region_code"].str[:2]
    city = applicant["core_team_city"].fillna("").str.replace("市", "", regex=False)
    known = province.map(lambda code: code in PROVINCE_CITIES)
    inside = [c in PROVINCE_CITIES.get(p, set()) for p, c in zip(province, city, strict=True)]
    features["team_elsewhere"] = np.where(known & (city != ""), ~np.array(inside), False).astype(float)
    for column in ("shared_address", "shared_phone", "shared_email", "shared_bank", "shared_legal_rep"):
        features[column] = applicant[column].astype(float)
    core = applicant["industry__digital_core"].astype(bool)
    partly = applicant["industry__digital_scope"] == "part"
    features["outside_digital_core"] = np.where(core, np.where(partly, 0.5, 0.0), 1.0)

    texts = apps["project_summary"].fillna("")
    length = texts.str.len().clip(lower=1)
    features["summary_similarity"] = _summary_similarity(
        texts.tolist(), apps["organisation_id"].to_numpy(), apps["id"].to_numpy(), program.pk
    )
    features["subsidy_talk"] = texts.str.count(SUBSIDY_TERMS) * 100 / length
    features["work_talk"] = texts.str.count(WORK_TERMS) * 100 / length

    reference = _reference_prices(program, _provider_sums(program, today))
    card_reference = apps["accelerator_id"].map(reference)
    claimed_price = apps["claimed_amount"] / apps["claimed_card_hours"].clip(lower=1e-9)
    features["claimed_price_ratio"] = (claimed_price / card_reference).fillna(1.0)
    features["claim_per_employee_log"] = np.log10(apps["claimed_amount"] / insured.clip(lower=1) + 1)

    # Usage counts from the week that holds the first day of the month the applicant applied in.
    month_start = applied_day.dt.to_period("M").dt.to_timestamp()
    since = month_start - pd.to_timedelta(month_start.dt.weekday, unit="D")
    keys = pd.DataFrame(
        {
            "app_row": np.arange(len(apps)),
            "enterprise_id": apps["organisation_id"].to_numpy(),
            "provider_id": apps["provider_id"].to_numpy(),
            "since": since.dt.date.to_numpy(),
        }
    )
    if only is not None:
        keys = keys[apps["id"].isin(list(only)).to_numpy()]
    per_card, per_enterprise = _usage(program, today, keys)
    sums = [*USAGE_SUMS, "reference_cost"]
    per_card["reference_cost"] = per_card["card_hours"] * per_card["accelerator_id"].map(reference).fillna(0)
    per_pair = per_card.groupby("app_row")[sums].sum()
    joined = per_pair.reindex(apps.index)
    records = joined["records"].fillna(0).astype(float)
    hours = joined["card_hours"].fillna(0).astype(float)
    features["has_usage"] = (records > 0).astype(float)
    # The claim covers the project from approval (or, before approval, from submission) to the
    # programme's close; usage is compared with the part of that period that has elapsed.
    decided = (
        pd.to_datetime(apps["decided_at"], utc=True, format="ISO8601")
        .dt.tz_convert(timezone.get_current_timezone())
        .dt.tz_localize(None)
        .dt.normalize()
    )
    period_start = decided.where(apps["status"] == "approved", applied_day).fillna(applied_day)
    period_end = pd.Timestamp(program.closes)
    elapsed = (
        (pd.Timestamp(min(today, program.closes)) - period_start).dt.days
        / (period_end - period_start).dt.days.clip(lower=1)
    ).clip(0, 1)
    features["elapsed_fraction"] = elapsed.fillna(0)
    expected = apps["claimed_card_hours"] * features["elapsed_fraction"]
    ratio = hours / expected.clip(lower=1e-9)
    features["usage_ratio"] = np.where(features["has_usage"] > 0, ratio.clip(upper=5), np.nan)
    safe_hours = hours.where(hours > 0)
    features["flat_share"] = (joined["flat_hours"].astype(float) / safe_hours).fillna(0)
    features["round_amount_share"] = (joined["round_records"].astype(float) / records.where(records > 0)).fillna(0)
    # Bunching: the share of usage in the last three weeks beyond what an even spread over the
    # period so far would put there (a project that started three weeks ago is not bunching).
    days_so_far = (pd.Timestamp(min(today, program.closes)) - period_start).dt.days.clip(lower=DEADLINE_DAYS)
    even_share = DEADLINE_DAYS / days_so_far
    raw_share = (joined["deadline_hours"].astype(float) / safe_hours).fillna(0)
    features["deadline_share"] = (raw_share - even_share).clip(lower=0).where(features["has_usage"] > 0, 0)
    features["night_share"] = (joined["night_records"].astype(float) / records.where(records > 0)).fillna(0)
    features["weekend_share"] = (joined["weekend_records"].astype(float) / records.where(records > 0)).fillna(0)
    billed = joined["amount"].astype(float) / joined["reference_cost"].astype(float).where(lambda s: s > 0)
    features["billed_price_ratio"] = billed.fillna(features["claimed_price_ratio"])
    enterprise_hours = per_enterprise.reindex(apps.index).astype(float)
    features["provider_usage_share"] = (hours / enterprise_hours.where(enterprise_hours > 0)).fillna(1.0)

    region = applicant["region_code"]
    claims = pd.DataFrame({"region": region, "provider": apps["provider_id"], "amount": apps["claimed_amount"]})
    district_total = claims.groupby("region")["amount"].transform("sum")
    district_provider = claims.groupby(["region", "provider"])["amount"].transform("sum")
    district_count = claims.groupby("region")["amount"].transform("size")
    features["provider_district_share"] = np.where(district_count >= 5, district_provider / district_total, 0.0)

    direct = np.zeros(len(apps))
    for column in identity_columns:
        # A value shared by more than SHARE_CAP organisations (a park's address) is no link.
        mine, theirs = applicant[column].to_numpy(), provider_org[column].to_numpy()
        specific = applicant[f"{column}_holders"].to_numpy() <= SHARE_CAP
        direct += (mine != "") & (mine == theirs) & specific
    features["related_direct"] = direct
    components = context.components
    same = components.loc[apps["organisation_id"]].to_numpy() == components.loc[apps["provider_org_id"]].to_numpy()
    features["related_indirect"] = (same & (direct == 0)).astype(float)

    history = context.history
    earlier = history[history["opens"] < program.opens]
    features["earlier_applications"] = (
        apps["organisation_id"].map(earlier.groupby("organisation_id").size()).fillna(0).astype(float)
    )
    earlier_fraud = earlier["id"].isin(list(context.frauds)).groupby(earlier["organisation_id"]).sum()
    features["earlier_fraud"] = apps["organisation_id"].map(earlier_fraud).fillna(0).astype(float)
    other = history[
        (history["program_id"] != program.pk)
        & ~history["status"].isin(["draft", "withdrawn"])
        & history["organisation_id"].isin(apps["organisation_id"])
    ][["organisation_id", "claimed_amount"]]
    if len(other):
        merged = (
            apps[["organisation_id", "claimed_amount"]]
            .reset_index()
            .merge(other, on="organisation_id", suffixes=("", "_other"))
        )
        close = (merged["claimed_amount"] - merged["claimed_amount_other"]).abs() <= 0.03 * merged["claimed_amount"]
        match = merged[close].groupby("index").size()
        matched = pd.Series(features.index.map(match), index=features.index).fillna(0).clip(upper=1)
        # An honest enterprise back for the next round may claim about the same again, but then
        # meters new usage; double dipping claims again for usage it already had.
        new_usage = (features["has_usage"] > 0) & (features["usage_ratio"] >= 0.5)
        features["other_program_claim_match"] = matched.where(~new_usage, 0).astype(float)
    else:
        features["other_program_claim_match"] = 0.0

    features = features[FEATURE_NAMES].astype(float)
    features.insert(0, "organisation_id", apps["organisation_id"].to_numpy())
    features.insert(0, "reference", apps["reference"].to_numpy())
    features.index = pd.Index(apps["id"].to_numpy(), name="application_id")
    if only is not None:
        features = features.loc[features.index.intersection(list(only))]
    return features
