"""Probes of frozen representations.

- Linear probe (the paper's representation-quality measure): L2 logistic regression on
  standardised features, C chosen by inner cross-validation on the training draw only,
  scored by ROC AUC (and balanced accuracy) on the fixed held-out test set.
- Age probe: ridge regression (alpha by inner CV) from the pretraining cohort's training
  rows to its validation rows, mean absolute error in years; the constant predictor (the
  training mean) is the floor.
- Site probe: logistic regression from training to validation rows; balanced accuracy of
  predicting the site (lower means less site information; chance is 1 / n_sites).
"""

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, RidgeCV
from sklearn.metrics import balanced_accuracy_score, mean_absolute_error, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_CS = tuple(np.logspace(-4, 2, 7))


def _l2_logistic_cv(**options) -> LogisticRegressionCV:
    """LogisticRegressionCV with an L2 penalty in every scikit-learn release. Releases that
    deprecate ``penalty`` (1.8 on) take it as ``l1_ratios=(0,)`` and announce that 1.10
    changes that default and makes ``C_`` a scalar: ask for both now, so that a fresh
    install of 1.10 fits the same probe."""
    if "use_legacy_attributes" in LogisticRegressionCV().get_params():
        options |= {"l1_ratios": (0.0,), "use_legacy_attributes": False}
    return LogisticRegressionCV(**options)


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    cs: Sequence[float] = DEFAULT_CS,
    inner_folds: int = 3,
    seed: int = 0,
    external: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """AUC and balanced accuracy on the test set; C picked on the training draw alone.
    ``external``: (x, y) of whole sites held out, scored by the same probe as
    ``external_auc`` and ``external_balanced_accuracy``."""
    folds = max(2, min(inner_folds, int(np.bincount(train_y.astype(int)).min())))
    probe = make_pipeline(
        StandardScaler(),
        _l2_logistic_cv(
            Cs=list(cs),
            cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
            scoring="roc_auc",
            max_iter=5000,
        ),
    )
    probe.fit(train_x, train_y)
    result = {
        **scores(test_y, probe.predict_proba(test_x)[:, 1]),
        "C": float(np.ravel(probe[-1].C_)[0]),  # an array before scikit-learn 1.10
    }
    if external is not None:
        held_out = scores(external[1], probe.predict_proba(external[0])[:, 1])
        result |= {f"external_{name}": value for name, value in held_out.items()}
    return result


def scores(labels: np.ndarray, probability: np.ndarray) -> dict[str, float]:
    """ROC AUC (NaN with one class) and balanced accuracy at 0.5 of predicted probabilities."""
    auc = roc_auc_score(labels, probability) if len(set(labels.tolist())) == 2 else float("nan")
    return {
        "auc": float(auc),
        "balanced_accuracy": float(balanced_accuracy_score(labels, probability >= 0.5)),
    }


def age_probe(
    train_x: np.ndarray, train_age: np.ndarray, test_x: np.ndarray, test_age: np.ndarray
) -> dict[str, float]:
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    probe.fit(train_x, train_age)
    return {
        "age_mae": float(mean_absolute_error(test_age, probe.predict(test_x))),
        "age_mae_constant": float(
            mean_absolute_error(test_age, np.full_like(test_age, train_age.mean()))
        ),
    }


def site_probe(
    train_x: np.ndarray, train_site: np.ndarray, test_x: np.ndarray, test_site: np.ndarray
) -> dict[str, float]:
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=5000))
    probe.fit(train_x, train_site)
    return {
        "site_balanced_accuracy": float(balanced_accuracy_score(test_site, probe.predict(test_x))),
        "site_chance": 1.0 / len(np.unique(train_site)),
    }
