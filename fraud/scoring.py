"""Risk assessment: features → rules and models → a score 0-100, a band, the top reasons, the
model version and the feature values, written for a whole programme (or some of its
applications) at once. The one entry point behind the Celery tasks and ``score_risk``."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Count
from django.utils import timezone

from fraud.features import FEATURE_BY_NAME, FEATURE_NAMES, Context, build_features, load_context, phrases
from fraud.model import FraudModel, current_model
from fraud.rules import active_rules, evaluate

logger = logging.getLogger(__name__)

RULES_ONLY = "rules-only"
TOP_MODEL_REASONS = 3
MODEL_REASON_MIN_PUSH = 0.25
TOP_REASONS_SHOWN = 3  # on the application, for lists and exports  # in logits: smaller pushes are not worth a sentence
# How the layers combine, as a noisy-OR: any one strong signal raises the score, and they add
# up without exceeding 1. The supervised probability leads when there is one; a rule's weight is
# the department's word (a related-party deal is disqualifying whatever the model thinks); the
# anomaly model adds a little of what no rule names. Chosen with ``evaluate_fraud`` (README).
PROBABILITY_WEIGHT = 0.9
ANOMALY_WEIGHT_SUPERVISED = 0.2
ANOMALY_WEIGHT_UNSUPERVISED = 0.4


@dataclass(frozen=True)
class ScoreResult:
    program: str
    scored: int
    model_version: str
    bands: dict


def combine(points, anomaly=None, probability=None):
    """The 0-100 score of each application from rule points (0-100), the anomaly percentile
    (0-1) and the fraud probability (0-1), whichever exist."""
    import numpy as np

    keep = 1 - np.asarray(points, dtype=float) / 100
    if probability is not None:
        keep = keep * (1 - PROBABILITY_WEIGHT * np.asarray(probability))
        if anomaly is not None:
            keep = keep * (1 - ANOMALY_WEIGHT_SUPERVISED * np.asarray(anomaly))
    elif anomaly is not None:
        keep = keep * (1 - ANOMALY_WEIGHT_UNSUPERVISED * np.asarray(anomaly))
    return np.clip(np.rint((1 - keep) * 100), 0, 100).astype(int)


def assess(features, model: FraudModel | None):
    """Scores and reasons for a feature table, without touching the database. Vectorised: the
    per-application work is only building the lists of what fired."""
    import numpy as np

    rules = active_rules()
    fired, points = evaluate(features, rules)
    anomaly = probability = contributions = None
    if model is not None:
        anomaly = model.anomaly_score(features)
        probability = model.fraud_probability(features)
        contributions = model.contributions(features)
    scores = combine(points.to_numpy(), anomaly, probability)
    count = len(features)
    reasons: list[list[dict]] = [[] for _ in range(count)]
    for active in sorted(rules, key=lambda a: -a.weight):  # heaviest first in every list
        rule = active.rule
        hits = np.flatnonzero(fired[rule.code].to_numpy())
        values = features[rule.feature].to_numpy()[hits]
        for i, (en, zh) in zip(hits.tolist(), phrases(rule.fmt, rule.en, rule.zh, values), strict=True):
            reasons[i].append({"code": rule.code, "weight": active.weight, "en": en, "zh": zh})
    if contributions is not None:
        # The features that pushed the model's score most, strongest first, as long as the push
        # is worth a sentence: the k-th reason of every application at once, feature by feature.
        pushes = contributions.to_numpy()
        names = list(contributions.columns)
        pushed = features[names].to_numpy()
        top = np.argsort(-pushes, axis=1)[:, :TOP_MODEL_REASONS]
        rows = np.arange(count)
        for k in range(top.shape[1]):
            strength = pushes[rows, top[:, k]]
            for j in np.unique(top[:, k]):
                hits = np.flatnonzero((top[:, k] == j) & (strength > MODEL_REASON_MIN_PUSH))
                if not len(hits):
                    continue
                feature = FEATURE_BY_NAME[names[j]]
                said = phrases(feature.fmt, feature.en, feature.zh, pushed[hits, j])
                for i, push, (en, zh) in zip(hits.tolist(), np.round(strength[hits], 3).tolist(), said, strict=True):
                    reasons[i].append({"feature": names[j], "push": push, "en": en, "zh": zh})
    values = _feature_objects(features)
    none = [None] * count
    rounded_anomaly = none if anomaly is None else np.round(np.asarray(anomaly, dtype=float), 4).tolist()
    rounded_probability = none if probability is None else np.round(np.asarray(probability, dtype=float), 4).tolist()
    results = [
        {
            "application_id": pk,
            "score": score,
            "rule_points": rule_points,
            "anomaly": anomaly_value,
            "probability": probability_value,
            "reasons": reasons_of,
            "features_json": values_of,
        }
        for pk, score, rule_points, anomaly_value, probability_value, reasons_of, values_of in zip(
            features.index.tolist(),
            np.asarray(scores).tolist(),
            points.to_numpy().tolist(),
            rounded_anomaly,
            rounded_probability,
            reasons,
            values,
            strict=True,
        )
    ]
    return results, (model.version if model is not None else RULES_ONLY), np.asarray(scores)


FEATURE_OBJECT = "{" + ",".join(f'"{name}":%s' for name in FEATURE_NAMES) + "}"


def _feature_objects(features) -> list[str]:
    """The feature values of each application as a JSON object (numbers rounded to 4 places,
    null for a missing or infinite value): the whole matrix is serialised by orjson at once and
    cut into rows, then each row is put into the object's template (nothing in it that a COPY
    line would need to escape)."""
    import numpy as np
    import orjson

    if not len(features):
        return []
    matrix = features[FEATURE_NAMES].to_numpy(dtype=float)
    matrix = np.ascontiguousarray(np.round(np.where(np.isfinite(matrix), matrix, np.nan), 4))
    body = orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    return [FEATURE_OBJECT % tuple(row.split(",")) for row in body[2:-2].split("],[")]


def score_program(
    program,
    *,
    application_ids=None,
    today: dt.date | None = None,
    model: FraudModel | None = None,
    context: Context | None = None,
) -> ScoreResult:
    """Assess every application of ``program`` (or those in ``application_ids``) and write the
    assessments and the applications' current score and band in one transaction. ``context``:
    the registry and history, when several programmes are scored (``score_programs``)."""
    from coupons.models import Application
    from fraud.models import RiskAssessment

    # Features compare each application with the whole programme, so all of it is read; only
    # the applications asked for are written.
    features = build_features(
        program,
        today=today or timezone.localdate(),
        context=context,
        only=None if application_ids is None else list(application_ids),
    )
    if features.empty:
        return ScoreResult(program.code, 0, RULES_ONLY, {})
    model = model if model is not None else current_model()
    results, version, _scores = assess(features, model)
    bands_of = program.bands_for([r["score"] for r in results])
    bands: dict[str, int] = {}
    for r, band in zip(results, bands_of, strict=True):
        r["band"] = band
        bands[band] = bands.get(band, 0) + 1
    with transaction.atomic():
        _write_assessments(RiskAssessment, results, version)
        _update_application_risk(
            Application,
            [
                (
                    r["application_id"],
                    r["score"],
                    r["band"],
                    "; ".join(x["en"] for x in r["reasons"][:TOP_REASONS_SHOWN]),
                )
                for r in results
            ],
        )
    return ScoreResult(program.code, len(results), version, bands)


ASSESSMENT_COLUMNS = [
    "application_id",
    "score",
    "band",
    "rule_points",
    "anomaly",
    "probability",
    "reasons",
    "features",
    "model_version",
    "created_at",
]


def _copy_number(value) -> str:
    """A number (or None) in PostgreSQL COPY text format."""
    return "\\N" if value is None else str(value)


def _copy_text(value) -> str:
    """A value in PostgreSQL COPY text format."""
    if value is None:
        return "\\N"
    text = value if isinstance(value, str) else str(value)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def _write_assessments(RiskAssessment, results: list[dict], version: str) -> None:
    import orjson

    if connection.vendor == "postgresql":
        from psycopg.copy import QueuedLibpqWriter

        now = timezone.now().isoformat()
        tail = f"\t{_copy_text(version)}\t{now}\n"

        def line(r: dict) -> str:
            # Numbers, a band name, nulls and JSON only; JSON holds no raw tab or newline, and
            # its backslashes are doubled for COPY's text format.
            return (
                f"{r['application_id']}\t{r['score']}\t{r['band']}\t{r['rule_points']}\t"
                f"{_copy_number(r['anomaly'])}\t{_copy_number(r['probability'])}\t"
                f"{orjson.dumps(r['reasons']).decode().replace(chr(92), chr(92) * 2)}\t"
                f"{r['features_json'].replace(chr(92), chr(92) * 2)}{tail}"
            )

        statement = f"COPY fraud_riskassessment ({', '.join(ASSESSMENT_COLUMNS)}) FROM STDIN"
        with connection.cursor() as cursor:
            # A writer thread sends each block while the next is being built, so that PostgreSQL
            # stores rows while Python makes lines.
            raw = cursor.cursor
            with (
                connection.wrap_database_errors,
                raw.copy(statement, writer=QueuedLibpqWriter(raw)) as copy,
            ):
                for start in range(0, len(results), 5000):
                    copy.write("".join(line(r) for r in results[start : start + 5000]))
        return
    RiskAssessment.objects.bulk_create(
        [
            RiskAssessment(
                application_id=r["application_id"],
                score=r["score"],
                band=r["band"],
                rule_points=r["rule_points"],
                anomaly=r["anomaly"],
                probability=r["probability"],
                reasons=r["reasons"],
                features=orjson.loads(r["features_json"]),
                model_version=version,
            )
            for r in results
        ],
        batch_size=2000,
    )


def _update_application_risk(Application, updates: list[tuple[int, int, str, str]]) -> None:
    """Write the current score, band and top reasons onto the applications (the review queue
    sorts by them, lists and exports show them)."""
    if connection.vendor == "postgresql":
        # One COPY into a temporary table and one UPDATE that leaves alone the applications
        # whose score, band and reasons are unchanged (most of them, in a nightly rescore).
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS pg_temp.fraud_risk_update")  # one transaction may score twice
            cursor.execute(
                "CREATE TEMPORARY TABLE fraud_risk_update (id bigint PRIMARY KEY, score smallint, band text, "
                "reasons text) ON COMMIT DROP"
            )
            with cursor.copy("COPY fraud_risk_update (id, score, band, reasons) FROM STDIN") as copy:
                copy.write(
                    "".join(f"{pk}\t{score}\t{band}\t{_copy_text(reasons)}\n" for pk, score, band, reasons in updates)
                )
            cursor.execute(
                "UPDATE coupons_application AS a SET risk_score = v.score, risk_band = v.band, risk_reasons = v.reasons "
                "FROM fraud_risk_update AS v WHERE a.id = v.id "
                "AND (a.risk_score, a.risk_band, a.risk_reasons) IS DISTINCT FROM (v.score, v.band, v.reasons)"
            )
        return
    objects = [
        Application(pk=pk, risk_score=score, risk_band=band, risk_reasons=reasons)
        for pk, score, band, reasons in updates
    ]
    Application.objects.bulk_update(objects, ["risk_score", "risk_band", "risk_reasons"], batch_size=500)


def score_programs(programs, *, progress=None, processes: int = 1) -> list[ScoreResult]:
    """Score every application of these programmes, reading the registry and the history once
    (the full rescore of ``score_risk``, the demo and the benchmark). ``progress`` wraps the
    list of programmes (a progress bar). With ``processes`` > 1 (PostgreSQL, and a platform
    that forks), the programmes are scored in that many forked processes at once, largest
    first, each with the registry and history this process read and its own connection."""
    programs = list(programs)
    if not programs:
        return []
    context = load_context()
    # Inside a transaction the children could not see its data, nor could this process close it.
    if processes <= 1 or len(programs) == 1 or connection.vendor != "postgresql" or connection.in_atomic_block:
        return [score_program(program, context=context) for program in (progress or list)(programs)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from django.db import connections

    from coupons.models import Application

    sizes = dict(
        Application.objects.filter(program__in=programs)
        .values("program_id")
        .annotate(n=Count("id"))
        .values_list("program_id", "n")
    )
    order = sorted(programs, key=lambda program: -sizes.get(program.pk, 0))
    connections.close_all()  # the children open their own
    global _forked_context
    _forked_context = context
    try:
        with ProcessPoolExecutor(
            max_workers=min(processes, len(programs)), mp_context=multiprocessing.get_context("fork")
        ) as pool:
            by_code = {r.program: r for r in pool.map(_score_in_child, [program.pk for program in order])}
    finally:
        _forked_context = None
    return [by_code[program.code] for program in programs]


_forked_context: Context | None = None  # what a forked child inherits from ``score_programs``


def _score_in_child(program_id: int) -> ScoreResult:
    from django.db import connections

    from coupons.models import Program

    try:
        return score_program(Program.objects.get(pk=program_id), context=_forked_context)
    finally:
        connections.close_all()


def score_applications(application_ids) -> list[ScoreResult]:
    """Score some applications, programme by programme (features compare them with the whole
    programme, so the rest of it is read, but only these are written)."""
    from coupons.models import Application, Program

    by_program: dict[int, list[int]] = {}
    for pk, program_id in Application.objects.filter(pk__in=list(application_ids)).values_list("pk", "program_id"):
        by_program.setdefault(program_id, []).append(pk)
    return [
        score_program(Program.objects.get(pk=program_id), application_ids=ids) for program_id, ids in by_program.items()
    ]


def latest_assessment(application):
    return application.assessments.order_by("-created_at", "-id").first()
