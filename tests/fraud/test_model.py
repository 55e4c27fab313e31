"""The fraud model (fraud/model.py): it trains only when its data changed, learns a supervised
model only with enough labels, separates clear classes, and persists safely: a signed file that
is checked before it is unpickled, and a loader that returns None (rules-only scoring) for a
missing, altered, other-format or other-scikit-learn file."""

from __future__ import annotations

import copy
import datetime as dt
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.exceptions import InconsistentVersionWarning

from fraud.features import FEATURE_NAMES
from fraud.model import MAGIC, MIN_FRAUDS, MIN_LABELLED, FraudModel, current_model
from fraud.models import RiskAssessment
from fraud.scoring import RULES_ONLY, score_program
from tests import factories
from tests.coupons.conftest import make_application
from tests.fraud.conftest import TODAY, features_on


def synthetic(n: int = 240, frauds: int = 60, seed: int = 7) -> tuple[pd.DataFrame, pd.Series]:
    """A feature table with a clear signal: the first ``frauds`` rows are young companies that
    share a bank account with their provider, copy summaries and use a fraction of their claim."""
    rng = np.random.default_rng(seed)
    data = {name: rng.normal(1.0, 0.3, n).clip(0) for name in FEATURE_NAMES}
    fraud = np.arange(n) < frauds
    data["registration_age_days"] = np.where(fraud, rng.integers(10, 200, n), rng.integers(700, 4000, n))
    data["related_direct"] = np.where(fraud, rng.integers(0, 3, n), 0)
    data["shared_bank"] = np.where(fraud, rng.integers(1, 4, n), rng.integers(0, 2, n) * (rng.random(n) < 0.1))
    data["summary_similarity"] = np.where(fraud, rng.uniform(0.6, 1.0, n), rng.uniform(0.0, 0.6, n))
    data["usage_ratio"] = np.where(fraud, rng.uniform(0.0, 0.5, n), rng.uniform(0.4, 1.5, n))
    data["insured_employees"] = np.where(fraud, rng.integers(0, 4, n), rng.integers(3, 200, n))
    features = pd.DataFrame(data, index=pd.RangeIndex(1000, 1000 + n, name="application_id"))
    labels = pd.Series(fraud.astype(int), index=features.index)
    return features, labels


@pytest.fixture
def data():
    return synthetic()


@pytest.fixture(scope="module")
def trained_once() -> FraudModel:
    model = FraudModel()
    assert model.train(*synthetic())
    return model


@pytest.fixture
def trained(trained_once) -> FraudModel:
    """A model trained on ``data`` (a copy: tests may train it further)."""
    return copy.deepcopy(trained_once)


# --- training ------------------------------------------------------------------------------


def test_training_twice_on_the_same_data_trains_once(data):
    features, labels = data
    model = FraudModel()

    assert model.train(features, labels) is True
    version = model.version
    assert model.train(features.copy(), labels.copy()) is False
    assert model.version == version


def test_new_data_or_new_labels_train_again(trained, data):
    features, labels = data
    first = trained.fingerprint

    changed = features.copy()
    changed.iloc[0, 0] += 1
    assert trained.train(changed, labels) is True
    assert trained.fingerprint != first

    relabelled = labels.copy()
    relabelled.iloc[-1] = 1
    assert trained.train(changed, relabelled) is True


def test_a_fresh_model_trains_on_data_it_has_seen_before(trained, data):
    """What ``train_fraud_model --force`` relies on: a new model has no fingerprint."""
    assert FraudModel().train(*data) is True


def test_without_labels_there_is_only_the_anomaly_model(data):
    features, _labels = data
    model = FraudModel()

    assert model.train(features) is True

    assert model.supervised is None
    assert model.fraud_probability(features) is None
    assert model.contributions(features) is None
    scores = model.anomaly_score(features)
    assert ((scores >= 0) & (scores <= 1)).all()
    assert model.metrics == {}


@pytest.mark.parametrize(
    ("labelled", "frauds"),
    [
        (MIN_LABELLED - 1, 15),  # too few labels
        (100, MIN_FRAUDS - 1),  # too few frauds
        (100, 100 - (MIN_FRAUDS - 1)),  # too few clean ones
    ],
)
def test_no_supervised_model_below_the_minimum_labels(labelled, frauds):
    features, _ = synthetic(n=240, frauds=120)
    # Labels for ``frauds`` fraud rows (the first 120 rows are frauds) and the rest clean.
    chosen = [*features.index[:frauds], *features.index[120 : 120 + labelled - frauds]]
    labels = pd.Series([1] * frauds + [0] * (labelled - frauds), index=chosen)
    model = FraudModel()

    model.train(features, labels)

    assert model.supervised is None
    assert (model.labelled, model.frauds) == (labelled, frauds)


def test_at_the_minimum_labels_there_is_a_supervised_model():
    features, _ = synthetic(n=240, frauds=120)
    chosen = [*features.index[:MIN_FRAUDS], *features.index[120 : 120 + MIN_LABELLED - MIN_FRAUDS]]
    labels = pd.Series([1] * MIN_FRAUDS + [0] * (MIN_LABELLED - MIN_FRAUDS), index=chosen)
    model = FraudModel()

    model.train(features, labels)

    assert model.supervised is not None


def test_with_enough_labels_the_probabilities_separate_the_classes_and_metrics_are_recorded(trained):
    fresh, truth = synthetic(seed=8)  # other applications drawn the same way

    probability = trained.fraud_probability(fresh)

    assert probability[truth == 1].mean() > 0.8
    assert probability[truth == 0].mean() < 0.2
    assert probability[truth == 1].min() > np.quantile(probability[truth == 0], 0.9)
    assert set(trained.metrics) == {"roc_auc", "pr_auc", "precision_top10", "held_out"}
    assert trained.metrics["held_out"] == 60  # a quarter of 240
    assert trained.metrics["roc_auc"] >= 0.95
    assert trained.metrics["pr_auc"] >= 0.9
    assert trained.metrics["precision_top10"] == 1.0
    assert (trained.samples, trained.labelled, trained.frauds) == (240, 240, 60)


def test_the_fixed_random_state_makes_training_reproducible(data, trained):
    again = FraudModel()
    again.train(*data)

    np.testing.assert_array_equal(again.anomaly_score(data[0]), trained.anomaly_score(data[0]))
    np.testing.assert_array_equal(again.fraud_probability(data[0]), trained.fraud_probability(data[0]))


def test_contributions_explain_what_pushed_a_fraud_up(trained, data):
    features, labels = data

    contributions = trained.contributions(features)

    assert list(contributions.columns) == trained.feature_names
    assert "has_usage" not in contributions.columns  # context, not evidence
    fraud_row = contributions.loc[labels[labels == 1].index].mean()
    signal = ["registration_age_days", "related_direct", "shared_bank", "summary_similarity", "usage_ratio"]
    assert (fraud_row[signal] > 0).all()
    assert fraud_row.idxmax() in [*signal, "insured_employees"]
    assert fraud_row.drop(index=[*signal, "insured_employees"]).abs().max() < fraud_row[signal].min()


# --- persistence ---------------------------------------------------------------------------


def test_save_and_load_give_the_same_predictions(trained, data, model_file):
    features, _labels = data

    trained.save()
    loaded = FraudModel.load()

    assert loaded is not None
    assert loaded.version == trained.version
    assert loaded.metrics == trained.metrics
    np.testing.assert_array_equal(loaded.anomaly_score(features), trained.anomaly_score(features))
    np.testing.assert_array_equal(loaded.fraud_probability(features), trained.fraud_probability(features))
    pd.testing.assert_frame_equal(loaded.contributions(features), trained.contributions(features))
    assert not list(model_file.parent.glob(".fraud-model-*")), "no temporary file is left behind"


def test_a_loaded_model_skips_training_on_the_data_it_was_trained_on(trained, data):
    trained.save()

    assert FraudModel.load().train(*data) is False


def _never_unpickle(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an untrusted file was unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


@pytest.mark.parametrize("where", ["payload", "signature"])
def test_a_tampered_file_loads_as_none_and_is_never_unpickled(trained, model_file, monkeypatch, where):
    trained.save()
    raw = bytearray(model_file.read_bytes())
    position = len(raw) - 10 if where == "payload" else len(MAGIC) + 5
    raw[position] ^= 0x01
    model_file.write_bytes(bytes(raw))
    _never_unpickle(monkeypatch)

    assert FraudModel.load() is None
    assert current_model() is None


def test_a_file_signed_with_another_key_loads_as_none(trained, model_file, settings, monkeypatch):
    settings.FRAUD_MODEL_KEY = "the key of another deployment"
    trained.save()
    settings.FRAUD_MODEL_KEY = "our key"
    _never_unpickle(monkeypatch)

    assert FraudModel.load() is None


def test_a_file_that_is_not_a_model_loads_as_none(model_file, monkeypatch):
    model_file.write_bytes(pickle.dumps({"format_version": 1, "model": {}}))
    _never_unpickle(monkeypatch)

    assert FraudModel.load() is None


def test_a_file_of_another_format_version_loads_as_none(trained, model_file, monkeypatch):
    monkeypatch.setattr(FraudModel, "FORMAT_VERSION", FraudModel.FORMAT_VERSION + 1)
    trained.save()  # validly signed, another format
    monkeypatch.undo()

    assert FraudModel.load() is None


def test_a_file_of_another_scikit_learn_loads_as_none(trained, model_file, monkeypatch):
    trained.save()
    real_load = pickle.load

    def load_with_a_version_warning(handle):
        warnings.warn(
            InconsistentVersionWarning(
                estimator_name="LogisticRegression", current_sklearn_version="1.9.1", original_sklearn_version="1.5.0"
            ),
            stacklevel=2,
        )
        return real_load(handle)

    monkeypatch.setattr(pickle, "load", load_with_a_version_warning)

    assert FraudModel.load() is None


def test_another_warning_while_loading_does_not_discard_the_model(trained, model_file, monkeypatch):
    trained.save()
    real_load = pickle.load

    def load_with_a_warning(handle):
        warnings.warn("something else", UserWarning, stacklevel=2)
        return real_load(handle)

    monkeypatch.setattr(pickle, "load", load_with_a_warning)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert FraudModel.load() is not None


def test_a_missing_file_loads_as_none(model_file):
    assert not model_file.exists()

    assert FraudModel.load() is None
    assert current_model() is None


def test_the_current_model_follows_the_file(trained, data, model_file):
    assert current_model() is None
    trained.save()
    assert current_model().version == trained.version

    features, labels = data
    changed = features.copy()
    changed.iloc[:, 0] += 1
    trained.train(changed, labels)
    trained.save()
    assert current_model().version == trained.version
    model_file.unlink()
    assert current_model() is None


# --- scoring with and without a model ----------------------------------------------------------


@pytest.fixture
def scored_program(program, provider):
    for days in (40, 400, 4000):
        org = factories.make_organisation(registration_date=TODAY - dt.timedelta(days=days))
        make_application(organisation=org, provider=provider, program=program)
    return program


def test_without_a_model_scoring_is_rules_only(scored_program):
    result = score_program(scored_program, today=TODAY)

    assert result.model_version == RULES_ONLY == "rules-only"
    assessments = RiskAssessment.objects.filter(application__program=scored_program)
    assert assessments.count() == 3
    for assessment in assessments:
        assert assessment.model_version == "rules-only"
        assert assessment.anomaly is None and assessment.probability is None
        assert assessment.score == assessment.rule_points  # rules only: the score is the points


def test_with_a_saved_model_its_version_is_recorded_on_the_assessments(scored_program):
    model = FraudModel()
    model.train(features_on(scored_program))
    model.save()

    result = score_program(scored_program, today=TODAY)

    assert result.model_version == model.version != RULES_ONLY
    assessments = RiskAssessment.objects.filter(application__program=scored_program)
    assert {a.model_version for a in assessments} == {model.version}
    assert all(a.anomaly is not None for a in assessments)
    assert all(a.score >= a.rule_points for a in assessments)  # the anomaly model only adds


def test_a_tampered_model_file_degrades_scoring_to_rules_only(scored_program, model_file):
    model = FraudModel()
    model.train(features_on(scored_program))
    model.save()
    raw = bytearray(model_file.read_bytes())
    raw[-1] ^= 0xFF
    model_file.write_bytes(bytes(raw))

    assert score_program(scored_program, today=TODAY).model_version == RULES_ONLY
