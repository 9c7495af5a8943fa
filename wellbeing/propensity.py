"""Who answers surveys: a response-propensity model and inverse-propensity-weighted means.

Survey answers come only from people who chose to answer, and they differ from those who did
not (satisfied people tend to answer more). :class:`ResponsePropensityModel` fits
``P(answer | shown, features)`` with an L2-regularised logistic regression (numpy and scipy);
weighting each answer by ``1 / propensity`` and taking the Hajek mean (:func:`ipw_mean`) corrects
the bias as far as the features explain who answers. To also undo the survey sampling, pass
``inclusion_probability * propensity`` as the propensity.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Self

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray
from scipy.optimize import minimize
from scipy.special import expit

from wellbeing.errors import PropensityModelError

logger = logging.getLogger(__name__)

PROPENSITY_FEATURES: tuple[str, ...] = (
    "activity_minutes_week",
    "tenure_days",
    "is_teen",
    "past_response_rate",
)
"""Default features: weekly minutes, account age (days), teen flag, past response rate."""

LOG1P_FEATURES: tuple[str, ...] = ("activity_minutes_week", "tenure_days")


class ResponsePropensityModel:
    """Logistic regression of "answered" on user features, among users shown a survey.

    Parameters
    ----------
    feature_names
        Columns read from a polars frame, or the column order of a numpy matrix.
    log1p_features
        Features to transform with ``log1p`` first (skewed counts such as minutes and days).
    l2
        Ridge penalty on the standardised coefficients (the intercept is not penalised).
    min_propensity
        Propensities are clipped to ``[min_propensity, 1]``, so weights are at most
        ``1 / min_propensity``.
    """

    def __init__(
        self,
        *,
        feature_names: Sequence[str] = PROPENSITY_FEATURES,
        log1p_features: Sequence[str] = LOG1P_FEATURES,
        l2: float = 1.0,
        min_propensity: float = 0.02,
    ) -> None:
        if not feature_names:
            msg = "feature_names must name at least one feature"
            raise PropensityModelError(msg)
        if not 0.0 < min_propensity <= 1.0:
            msg = f"min_propensity must be in (0, 1], got {min_propensity}"
            raise PropensityModelError(msg)
        if l2 < 0:
            msg = f"l2 must be >= 0, got {l2}"
            raise PropensityModelError(msg)
        self.feature_names = tuple(feature_names)
        self.log1p_features = tuple(f for f in log1p_features if f in self.feature_names)
        self.l2 = l2
        self.min_propensity = min_propensity
        self._mean: NDArray[np.float64] | None = None
        self._scale: NDArray[np.float64] | None = None
        self._coef: NDArray[np.float64] | None = None
        self._intercept = 0.0

    @property
    def is_fitted(self) -> bool:
        """Whether :meth:`fit` has run."""
        return self._coef is not None

    @property
    def coefficients(self) -> dict[str, float]:
        """Coefficients per standardised feature, plus ``'intercept'``."""
        coef = self._require_fitted()
        out = {name: float(c) for name, c in zip(self.feature_names, coef, strict=True)}
        out["intercept"] = self._intercept
        return out

    def fit(self, features: pl.DataFrame | ArrayLike, responded: ArrayLike) -> Self:
        """Fit on users who were shown a survey.

        Parameters
        ----------
        features
            One row per shown survey: a polars frame with :attr:`feature_names` columns or a
            numeric matrix with those columns in that order.
        responded
            Whether each one was answered (bool or 0/1).

        Raises
        ------
        PropensityModelError
            Mismatched lengths, missing values, or only one outcome (all or none answered).
        """
        x = self._matrix(features)
        y = np.asarray(responded, dtype=np.float64).ravel()
        if y.shape[0] != x.shape[0]:
            msg = f"features have {x.shape[0]} rows but responded has {y.shape[0]}"
            raise PropensityModelError(msg)
        if not np.isin(y, (0.0, 1.0)).all():
            msg = "responded must hold only booleans or 0/1"
            raise PropensityModelError(msg)
        if y.min() == y.max():
            msg = "need both answered and unanswered surveys to fit response propensity"
            raise PropensityModelError(msg)
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale[scale == 0] = 1.0
        z = (x - mean) / scale
        design = np.hstack([np.ones((z.shape[0], 1)), z])
        penalty = np.full(design.shape[1], self.l2)
        penalty[0] = 0.0

        def loss_and_grad(w: NDArray[np.float64]) -> tuple[float, NDArray[np.float64]]:
            eta = design @ w
            loss = float(np.sum(np.logaddexp(0.0, eta) - y * eta) + 0.5 * np.sum(penalty * w * w))
            grad = design.T @ (expit(eta) - y) + penalty * w
            return loss, grad

        start = np.zeros(design.shape[1])
        start[0] = float(np.log(y.mean() / (1.0 - y.mean())))
        result = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B")
        if not result.success:
            logger.warning("propensity fit did not converge: %s", result.message)
        self._mean, self._scale = mean, scale
        self._intercept = float(result.x[0])
        self._coef = np.asarray(result.x[1:], dtype=np.float64)
        logger.info(
            "fitted response propensity rows=%d response_rate=%.3f iterations=%d",
            x.shape[0],
            y.mean(),
            int(result.nit),
        )
        return self

    def predict(self, features: pl.DataFrame | ArrayLike) -> NDArray[np.float64]:
        """Return ``P(answer | shown)`` per row, clipped to ``[min_propensity, 1]``."""
        coef = self._require_fitted()
        assert self._mean is not None and self._scale is not None
        z = (self._matrix(features) - self._mean) / self._scale
        p = expit(z @ coef + self._intercept)
        return np.asarray(np.clip(p, self.min_propensity, 1.0))

    def weights(self, features: pl.DataFrame | ArrayLike) -> NDArray[np.float64]:
        """Return ``1 / propensity`` per row (at most ``1 / min_propensity``)."""
        return 1.0 / self.predict(features)

    def _require_fitted(self) -> NDArray[np.float64]:
        if self._coef is None:
            msg = "ResponsePropensityModel is not fitted; call fit() first"
            raise PropensityModelError(msg)
        return self._coef

    def _matrix(self, features: pl.DataFrame | ArrayLike) -> NDArray[np.float64]:
        if isinstance(features, pl.DataFrame):
            missing = [f for f in self.feature_names if f not in features.columns]
            if missing:
                msg = f"features lack column(s) {missing}; expected {list(self.feature_names)}"
                raise PropensityModelError(msg)
            x = features.select(pl.col(f).cast(pl.Float64) for f in self.feature_names).to_numpy()
        else:
            x = np.asarray(features, dtype=np.float64)
            if x.ndim == 1:
                x = x.reshape(-1, 1)
        x = np.array(x, dtype=np.float64)  # a private copy: transformed in place below
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            msg = f"expected {len(self.feature_names)} feature columns, got shape {x.shape}"
            raise PropensityModelError(msg)
        if not np.isfinite(x).all():
            msg = "features hold missing or infinite values; fill them before fitting"
            raise PropensityModelError(msg)
        for name in self.log1p_features:
            j = self.feature_names.index(name)
            x[:, j] = np.log1p(np.maximum(x[:, j], 0.0))
        return x


def ipw_mean(values: ArrayLike, propensities: ArrayLike) -> float:
    """Inverse-propensity-weighted (Hajek) mean: ``sum(v / p) / sum(1 / p)``.

    Parameters
    ----------
    values
        The answers observed.
    propensities
        Each answer's probability of being observed, in ``(0, 1]`` (clip beforehand to bound
        the weights, as :meth:`ResponsePropensityModel.predict` does).

    Raises
    ------
    PropensityModelError
        Empty or mismatched inputs, missing values, or propensities outside ``(0, 1]``.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    p = np.asarray(propensities, dtype=np.float64).ravel()
    if v.shape != p.shape or v.size == 0:
        msg = f"values ({v.size}) and propensities ({p.size}) must be non-empty and equal in length"
        raise PropensityModelError(msg)
    if not (np.isfinite(v).all() and np.isfinite(p).all()):
        msg = "values and propensities must not hold missing or infinite values"
        raise PropensityModelError(msg)
    if not ((p > 0).all() and (p <= 1).all()):
        msg = f"propensities must lie in (0, 1], got min {p.min():g}, max {p.max():g}"
        raise PropensityModelError(msg)
    w = 1.0 / p
    return float(np.sum(w * v) / np.sum(w))


def describe(model: ResponsePropensityModel) -> dict[str, Any]:
    """A JSON-ready summary of a fitted model (for job reports)."""
    return {
        "features": list(model.feature_names),
        "log1p_features": list(model.log1p_features),
        "l2": model.l2,
        "min_propensity": model.min_propensity,
        "coefficients": model.coefficients,
    }
