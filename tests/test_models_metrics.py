"""Threshold at a background FPR, TPR, AUC and the paper-style table."""

import numpy as np
import pytest

from models import metrics


def test_threshold_allows_at_most_the_target_rate():
    background = np.arange(1_000_000)[::-1].copy()
    t = metrics.threshold_at_fpr(background, 1e-5)
    assert t == 999_989 and metrics.rate_above(background, t) == 1e-5


def test_threshold_with_ties_never_exceeds_the_rate():
    background = np.array([0] * 99_990 + [5] * 10)
    t = metrics.threshold_at_fpr(background, 1e-4)
    assert metrics.rate_above(background, t) <= 1e-4
    assert t == 0


def test_tpr_and_auc():
    background, signal = np.array([0.0, 1.0, 2.0, 3.0]), np.array([2.5, 4.0])
    assert metrics.auc(background, signal) == pytest.approx(7 / 8)
    assert metrics.tpr_at_fpr(background, signal, 0.25) == 1.0


def test_table_columns_in_paper_order():
    values = {name: {"tpr_at_fpr": 0.0123, "auc": 0.954} for name in metrics.SIGNALS}
    text = metrics.table([("DNN AE QAT 8 bits", "IO", values)])
    assert "LQ -> b tau, A -> 4l, h+- -> tau nu, h0 -> tau tau" in text
    assert "| DNN AE QAT 8 bits | IO | 1.23, 1.23, 1.23, 1.23 | 95, 95, 95, 95 |" in text


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="no background scores"):
        metrics.threshold_at_fpr([])
