"""The fraud model: an unsupervised anomaly model that works with no labels, and a supervised
model trained on auditors' outcomes once enough exist, with calibrated probabilities. After
paperless-ngx's document classifier: one class, a format version, ``train()`` that says whether
it trained, a signed save, and a safe load that returns None (callers fall back to the rules)
when the file is missing, altered, of another format or of another scikit-learn.

FORMAT_VERSION changelog:
  1  IsolationForest over the standardised features; isotonic-calibrated logistic regression.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import os
import pickle
import secrets
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.utils import timezone

logger = logging.getLogger(__name__)

MAGIC = b"CPFM"
MIN_LABELLED = 40
MIN_FRAUDS = 8
RANDOM_STATE = 20261128

# How each feature enters the models: counts and sizes on a log scale, missing usage as neutral.
LOG_FEATURES = {
    "registration_age_days",
    "insured_employees",
    "rd_staff",
    "shared_address",
    "shared_phone",
    "shared_email",
    "shared_bank",
    "shared_legal_rep",
    "earlier_applications",
}
NEUTRAL = {"usage_ratio": 1.0}
# Context for the rules, not evidence: whether usage exists mostly reflects how far review has
# gone (approved applications have usage), which would teach the model the reviewers' past
# decisions instead of the applicants' behaviour.
NOT_MODELLED = {"has_usage", "elapsed_fraction"}
# Templated honest summaries share boilerplate; only similarity beyond it says anything.
SIMILARITY_FLOOR = 0.5


def model_matrix(features, names: list[str]):
    import numpy as np

    columns = []
    for name in names:
        values = features[name].astype(float).fillna(NEUTRAL.get(name, 0.0)).to_numpy()
        if name in LOG_FEATURES:
            values = np.log1p(np.clip(values, 0, None))
        elif name == "summary_similarity":
            values = np.clip(values - SIMILARITY_FLOOR, 0, None) / (1 - SIMILARITY_FLOOR)
        columns.append(values)
    return np.column_stack(columns) if columns else np.empty((len(features), 0))


def _signing_key() -> bytes:
    secret = getattr(settings, "FRAUD_MODEL_KEY", "") or settings.SECRET_KEY
    return hashlib.sha256(b"fraud-model:" + secret.encode()).digest()


def fingerprint(features, labels) -> str:
    """What the model was trained on: the feature values and the labels, hashed."""
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(features.sort_index(), index=True).to_numpy().tobytes())
    if labels is not None:
        digest.update(pd.util.hash_pandas_object(labels.sort_index(), index=True).to_numpy().tobytes())
    return digest.hexdigest()


@dataclass
class FraudModel:
    FORMAT_VERSION = 1

    feature_names: list[str] = field(default_factory=list)
    fingerprint: str = ""
    version: str = ""
    sklearn_version: str = ""
    scaler: object = None
    anomaly: object = None
    anomaly_reference: object = None  # sorted training anomaly scores, for percentiles
    supervised: object = None  # calibrated classifier, or None
    explainer: object = None  # the logistic regression whose coefficients explain
    metrics: dict = field(default_factory=dict)
    samples: int = 0
    labelled: int = 0
    frauds: int = 0

    # --- training ----------------------------------------------------------------------------

    def train(self, features, labels=None) -> bool:
        """Fit on ``features`` (one row per application) and, where there are enough,
        ``labels`` (1 fraud, 0 clean, indexed like ``features``). Returns False without doing
        anything when the data are those of the current fit."""
        import numpy as np
        import sklearn
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.ensemble import IsolationForest
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import average_precision_score, roc_auc_score
        from sklearn.model_selection import train_test_split
        from sklearn.preprocessing import StandardScaler

        from fraud.features import FEATURE_NAMES

        names = [name for name in FEATURE_NAMES if name not in NOT_MODELLED]
        features = features[list(FEATURE_NAMES)]
        labels = labels.reindex(features.index).dropna().astype(int) if labels is not None else None
        print_ = fingerprint(features, labels)
        if print_ == self.fingerprint and self.anomaly is not None:
            return False
        matrix = model_matrix(features, names)
        scaler = StandardScaler().fit(matrix)
        scaled = scaler.transform(matrix)
        anomaly = IsolationForest(n_estimators=200, random_state=RANDOM_STATE, n_jobs=1).fit(scaled)
        reference = np.sort(-anomaly.score_samples(scaled))

        supervised = explainer = None
        metrics: dict = {}
        labelled = 0 if labels is None else len(labels)
        frauds = 0 if labels is None else int(labels.sum())
        if labels is not None and labelled >= MIN_LABELLED and frauds >= MIN_FRAUDS and labelled - frauds >= MIN_FRAUDS:
            x = scaler.transform(model_matrix(features.loc[labels.index], names))
            y = labels.to_numpy()

            def fit(x_fit, y_fit):
                base = LogisticRegression(C=0.5, class_weight="balanced", max_iter=2000, random_state=RANDOM_STATE)
                folds = max(2, min(5, int(y_fit.sum()), int(len(y_fit) - y_fit.sum())))
                calibrated = CalibratedClassifierCV(base, method="sigmoid", cv=folds).fit(x_fit, y_fit)
                plain = LogisticRegression(
                    C=0.5, class_weight="balanced", max_iter=2000, random_state=RANDOM_STATE
                ).fit(x_fit, y_fit)
                return calibrated, plain

            x_train, x_test, y_train, y_test = train_test_split(
                x, y, test_size=0.25, stratify=y, random_state=RANDOM_STATE
            )
            held_out, _plain = fit(x_train, y_train)
            probability = held_out.predict_proba(x_test)[:, 1]
            top = max(1, round(len(y_test) * 0.1))
            order = np.argsort(-probability)[:top]
            metrics = {
                "roc_auc": round(float(roc_auc_score(y_test, probability)), 4),
                "pr_auc": round(float(average_precision_score(y_test, probability)), 4),
                "precision_top10": round(float(y_test[order].mean()), 4),
                "held_out": len(y_test),
            }
            supervised, explainer = fit(x, y)

        self.feature_names = names
        self.fingerprint = print_
        # The time, the data's fingerprint and a random tail: unique even when retrained twice a second.
        self.version = f"v{self.FORMAT_VERSION}-{timezone.now():%Y%m%d%H%M%S}-{print_[:8]}-{secrets.token_hex(3)}"
        self.sklearn_version = sklearn.__version__
        self.scaler, self.anomaly, self.anomaly_reference = scaler, anomaly, reference
        self.supervised, self.explainer, self.metrics = supervised, explainer, metrics
        self.samples, self.labelled, self.frauds = len(features), labelled, frauds
        return True

    # --- predicting --------------------------------------------------------------------------

    def _scaled(self, features):
        return self.scaler.transform(model_matrix(features, self.feature_names))

    def anomaly_score(self, features):
        """0-1: the share of the training applications less anomalous than each row."""
        import numpy as np

        raw = -self.anomaly.score_samples(self._scaled(features))
        return np.searchsorted(self.anomaly_reference, raw, side="right") / max(1, len(self.anomaly_reference))

    def fraud_probability(self, features):
        if self.supervised is None:
            return None
        return self.supervised.predict_proba(self._scaled(features))[:, 1]

    def contributions(self, features):
        """Per row and feature, how far it pushed the supervised score up (coefficient ×
        standardised value); None without a supervised model."""
        import pandas as pd

        if self.explainer is None:
            return None
        scaled = self._scaled(features)
        return pd.DataFrame(scaled * self.explainer.coef_[0], index=features.index, columns=self.feature_names)

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: Path | None = None) -> Path:
        """Write atomically (a temporary file renamed into place), signed with HMAC-SHA256."""
        path = Path(path or settings.FRAUD_MODEL_PATH)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = pickle.dumps(
            {"format_version": self.FORMAT_VERSION, "model": self.__dict__}, protocol=pickle.HIGHEST_PROTOCOL
        )
        signature = hmac.new(_signing_key(), payload, hashlib.sha256).digest()
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".fraud-model-")
        with os.fdopen(handle, "wb") as out:
            out.write(MAGIC + signature + payload)
        os.replace(temporary, path)
        return path

    @classmethod
    def load(cls, path: Path | None = None) -> FraudModel | None:
        """The saved model, or None when there is none or it cannot be trusted: a bad signature
        (never unpickled), another format version, or another scikit-learn (retrain)."""
        path = Path(path or settings.FRAUD_MODEL_PATH)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as error:
            logger.warning("fraud model %s unreadable: %s", path, error)
            return None
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 32:
            logger.warning("fraud model %s is not a model file", path)
            return None
        signature, payload = data[len(MAGIC) : len(MAGIC) + 32], data[len(MAGIC) + 32 :]
        if not hmac.compare_digest(signature, hmac.new(_signing_key(), payload, hashlib.sha256).digest()):
            logger.warning("fraud model %s has a bad signature; ignored", path)
            return None
        from sklearn.exceptions import InconsistentVersionWarning

        with warnings.catch_warnings():
            warnings.simplefilter("error", InconsistentVersionWarning)
            try:
                stored = pickle.load(io.BytesIO(payload))  # noqa: S301 - signed by us, checked above
            except InconsistentVersionWarning:
                logger.warning("fraud model %s was saved by another scikit-learn; retrain", path)
                return None
            except Exception as error:  # a corrupt payload under a valid signature: treat as absent
                logger.warning("fraud model %s cannot be loaded: %s", path, error)
                return None
        if not isinstance(stored, dict) or stored.get("format_version") != cls.FORMAT_VERSION:
            logger.warning("fraud model %s has another format version; retrain", path)
            return None
        model = cls()
        model.__dict__.update(stored["model"])
        return model


_cache: dict = {"key": None, "model": None}


def current_model() -> FraudModel | None:
    """The saved model, loaded once per process and again when the file changes."""
    path = Path(settings.FRAUD_MODEL_PATH)
    try:
        stat = path.stat()
        key = (str(path), stat.st_mtime_ns, stat.st_size)
    except FileNotFoundError:
        _cache.update(key=None, model=None)
        return None
    if _cache["key"] != key:
        _cache.update(key=key, model=FraudModel.load(path))
    return _cache["model"]
