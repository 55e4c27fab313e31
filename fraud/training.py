"""Training and evaluation: the one training entry point (beat task and
``manage.py train_fraud_model``), and ``evaluate`` for ``manage.py evaluate_fraud``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from fraud.features import build_features
from fraud.model import FraudModel, current_model
from fraud.models import ModelVersion, Outcome

# Retrain once this many outcomes arrived since the model in use was trained.
RETRAIN_AFTER_NEW_OUTCOMES = 20


def training_data(programs=None, *, today: dt.date | None = None):
    """Features of every application of ``programs`` (default: all) and the auditors' labels
    (1 fraud, 0 clean) of those that have one."""
    import pandas as pd

    from coupons.models import Program

    programs = list(programs if programs is not None else Program.objects.order_by("opens"))
    frames = [build_features(program, today=today) for program in programs]
    frames = [frame for frame in frames if not frame.empty]
    features = pd.concat(frames) if frames else pd.DataFrame()
    verdicts = dict(
        Outcome.objects.filter(application_id__in=list(features.index)).values_list("application_id", "verdict")
    )
    labels = pd.Series(
        {pk: 1 if verdict == Outcome.Verdict.FRAUD else 0 for pk, verdict in verdicts.items()}, dtype=float
    )
    return features, labels


@dataclass(frozen=True)
class TrainResult:
    trained: bool
    version: str
    samples: int
    labelled: int
    frauds: int
    supervised: bool
    metrics: dict


def train_fraud_model(*, force: bool = False) -> TrainResult:
    """Train on everything the platform knows and put the model in use. Skips the work (and
    says so) when the training data are those of the model in use, unless ``force``."""
    features, labels = training_data()
    model = (None if force else current_model()) or FraudModel()
    if features.empty:
        return TrainResult(False, model.version, 0, 0, 0, False, {})
    trained = model.train(features, labels)
    if trained:
        model.save()
        with transaction.atomic():
            ModelVersion.objects.filter(active=True).update(active=False)
            ModelVersion.objects.create(
                version=model.version,
                fingerprint=model.fingerprint,
                samples=model.samples,
                labelled=model.labelled,
                frauds=model.frauds,
                supervised=model.supervised is not None,
                metrics=model.metrics,
                active=True,
            )
    return TrainResult(
        trained, model.version, model.samples, model.labelled, model.frauds, model.supervised is not None, model.metrics
    )


def retrain_due() -> bool:
    """Enough new outcomes since the model in use was trained, or no usable model at all."""
    active = ModelVersion.objects.filter(active=True).first()
    if active is None or current_model() is None:
        return True  # no usable model (none yet, or its file is gone, altered or outdated)
    return Outcome.objects.filter(recorded_at__gt=active.trained_at).count() >= RETRAIN_AFTER_NEW_OUTCOMES


# --- evaluation ----------------------------------------------------------------------------


def ranking_metrics(y_true, scores) -> dict:
    """ROC-AUC, PR-AUC and precision at the prevalence (the top k, k = number of frauds)."""
    import numpy as np
    from sklearn.metrics import average_precision_score, roc_auc_score

    y_true, scores = np.asarray(y_true, dtype=int), np.asarray(scores, dtype=float)
    k = int(y_true.sum())
    if k == 0 or k == len(y_true):
        return {
            "roc_auc": float("nan"),
            "pr_auc": float("nan"),
            "precision_at_prevalence": float("nan"),
            "frauds": k,
            "n": len(y_true),
        }
    # Ties broken against us: a fraud tied with a clean one is ranked below it.
    order = np.lexsort((y_true, -scores))
    return {
        "roc_auc": float(roc_auc_score(y_true, scores)),
        "pr_auc": float(average_precision_score(y_true, scores)),
        "precision_at_prevalence": float(y_true[order[:k]].mean()),
        "frauds": k,
        "n": len(y_true),
    }


def department_baseline(features):
    """The department's three signals as a score: new registration with nobody insured, an
    industry outside the core, usage far below the claim (one point each)."""
    new_and_empty = (features["registration_age_days"] < 180) & (features["insured_employees"] <= 2)
    outside = features["outside_digital_core"] >= 1
    below = (features["has_usage"] > 0) & (features["usage_ratio"] < 0.4)
    return new_and_empty.astype(int) + outside.astype(int) + below.astype(int)


def evaluate(
    *,
    train_program,
    test_program,
    truth: dict[str, bool],
    holdout_pattern: str = "",
    patterns: dict[str, str] | None = None,
    lookalikes: dict[str, str] | None = None,
    today=None,
) -> dict:
    """Train on ``train_program``'s audit outcomes (leaving out the labels of
    ``holdout_pattern``'s applications, so that pattern is new to the model), score
    ``test_program`` and compare with the ground truth (reference → is fraud)."""
    from fraud.scoring import assess

    today = today or timezone.localdate()
    train_features = build_features(train_program, today=today)
    _features, labels = training_data([train_program], today=today)
    if holdout_pattern and patterns:
        hidden = {pk for pk, ref in train_features["reference"].items() if patterns.get(ref) == holdout_pattern}
        labels = labels.drop(index=[pk for pk in labels.index if pk in hidden])
    model = FraudModel()
    model.train(train_features, labels)
    test_features = build_features(test_program, today=today)
    known = test_features[test_features["reference"].isin(truth)]
    y = [truth[ref] for ref in known["reference"]]
    _results, version, scores = assess(known, model)
    report = {
        "model": ranking_metrics(y, scores),
        "rules_only": ranking_metrics(y, assess(known, None)[2]),
        "department_baseline": ranking_metrics(y, department_baseline(known).to_numpy()),
        "labels": {"labelled": len(labels), "frauds": int(labels.sum())},
        "model_version": version,
        "held_out_metrics": model.metrics,
    }
    if patterns:
        import numpy as np

        order = np.argsort(-scores, kind="stable")
        top = known["reference"].to_numpy()[order[: max(1, int(sum(y)))]]
        kinds: dict[str, int] = {}
        for ref in top:
            kinds[patterns.get(ref, "?")] = kinds.get(patterns.get(ref, "?"), 0) + 1
        report["top_of_ranking"] = kinds
        report["recall_by_pattern"] = _recall_by_pattern(known, scores, patterns, int(sum(y)))
    if lookalikes:
        import numpy as np

        order = np.argsort(-scores, kind="stable")
        refs = known["reference"].to_numpy()
        k = max(1, int(sum(y)))
        in_top = [lookalikes.get(ref, "") for ref in refs[order[:k]]]
        everywhere = [lookalikes.get(ref, "") for ref in refs]
        report["lookalikes_in_top"] = {
            kind: f"{in_top.count(kind)}/{everywhere.count(kind)}" for kind in sorted({x for x in everywhere if x})
        }
    return report


def _recall_by_pattern(known, scores, patterns, k):
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    top = set(known["reference"].to_numpy()[order[:k]])
    recall: dict[str, list[int]] = {}
    for ref in known["reference"]:
        pattern = patterns.get(ref, "?")
        hit, total = recall.get(pattern, [0, 0])
        recall[pattern] = [hit + (ref in top), total + 1]
    return {pattern: f"{hit}/{total}" for pattern, (hit, total) in sorted(recall.items())}
