"""The online learner and the blend (models_py/online.py), on small synthetic streams."""

from __future__ import annotations

import numpy as np
import pytest

from featurestack.core.errors import UsageError
from models_py.online import OnlineModel, blend
from models_py.spec import OnlineSpec


def _stream(n: int, sign: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    return X, (sign * X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(float)


def test_it_learns_follows_a_regime_change_and_scores_like_scikit_learn() -> None:
    from sklearn.metrics import roc_auc_score

    model = OnlineModel(["a", "b", "c", "d"], "binary", OnlineSpec(learning_rate=0.05))
    assert np.isnan(model.predict(np.zeros((2, 4)))).all()  # nothing learned: no opinion
    X, y = _stream(1500, 1.0, 0)
    model.learn(X, y)
    test_X, test_y = _stream(500, 1.0, 1)
    assert roc_auc_score(test_y, model.predict(test_X)) > 0.9
    # the relation flips: the constant step forgets the old regime
    X2, y2 = _stream(1500, -1.0, 2)
    model.learn(X2, y2)
    flipped_X, flipped_y = _stream(500, -1.0, 3)
    assert roc_auc_score(flipped_y, model.predict(flipped_X)) > 0.9
    assert model.learned == 3000
    reference = model.model.predict_proba(model._scale(flipped_X[:20]))[:, 1]
    assert model.predict(flipped_X[:20]) == pytest.approx(reference, rel=1e-12)


def test_the_blend_and_what_is_refused() -> None:
    assert blend(0.6, 0.2, 0.25) == pytest.approx(0.5)
    assert blend(0.6, float("nan"), 0.25) == 0.6  # nothing learned yet: the batch score
    assert blend(None, 0.2, 0.25) is None
    with pytest.raises(UsageError, match="binary and regression"):
        OnlineModel(["a"], "multiclass", OnlineSpec())
