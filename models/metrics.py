"""Anomaly-detection figures of merit: ROC curves, TPR at a background FPR (1e-5), AUC, and paper-style tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TARGET_FPR = 1e-5
#: The signals in the column order of the paper's Tables I and II, with their labels.
SIGNALS = {"leptoquark": "LQ -> b tau", "Ato4l": "A -> 4l", "hChToTauNu": "h+- -> tau nu", "hToTauTau": "h0 -> tau tau"}


def threshold_at_fpr(background, fpr: float = TARGET_FPR):
    """The smallest background score t with fraction(background > t) <= fpr (a trigger fires on score > t)."""
    background = np.asarray(background).ravel()
    if background.size == 0:
        raise ValueError("no background scores")
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"fpr must be in [0, 1), got {fpr}")
    allowed = int(np.floor(fpr * background.size))
    return np.sort(background)[::-1][allowed]


def rate_above(scores, threshold) -> float:
    """Fraction of scores strictly above the threshold."""
    scores = np.asarray(scores).ravel()
    return float(np.count_nonzero(scores > threshold)) / scores.size


def tpr_at_fpr(background, signal, fpr: float = TARGET_FPR) -> float:
    return rate_above(signal, threshold_at_fpr(background, fpr))


def auc(background, signal) -> float:
    """Area under the ROC curve (ties count one half), from ranks."""
    from sklearn.metrics import roc_auc_score

    background, signal = np.asarray(background).ravel(), np.asarray(signal).ravel()
    labels = np.concatenate([np.zeros(background.size), np.ones(signal.size)])
    return float(roc_auc_score(labels, np.concatenate([background, signal]).astype(np.float64)))


def roc_curve(background, signal):
    """(fpr, tpr) arrays of the ROC curve."""
    from sklearn.metrics import roc_curve as sk_roc

    background, signal = np.asarray(background).ravel(), np.asarray(signal).ravel()
    labels = np.concatenate([np.zeros(background.size), np.ones(signal.size)])
    fpr, tpr, _ = sk_roc(labels, np.concatenate([background, signal]).astype(np.float64))
    return fpr, tpr


def figures(background, signals: dict, fpr: float = TARGET_FPR) -> dict:
    """{signal: {"tpr_at_fpr": ..., "auc": ...}} for every signal in `signals` ({name: scores})."""
    threshold = threshold_at_fpr(background, fpr)
    return {name: {"tpr_at_fpr": rate_above(scores, threshold), "auc": auc(background, scores)}
            for name, scores in signals.items()}


def table(rows, fpr: float = TARGET_FPR) -> str:
    """Markdown table laid out like the paper's Tables I/II; rows are (model, score, figures) with `figures` as
    above."""
    names = [n for n in SIGNALS]
    labels = ", ".join(SIGNALS[n] for n in names)
    lines = [f"| model | score | TPR at FPR {fpr:g} [%] ({labels}) | AUC [%] |", "|---|---|---|---|"]
    for model, score, values in rows:
        tpr = ", ".join(_percent(values[n]["tpr_at_fpr"], 2) for n in names)
        area = ", ".join(_percent(values[n]["auc"], 0) for n in names)
        lines.append(f"| {model} | {score} | {tpr} | {area} |")
    return "\n".join(lines)


def _percent(value: float, digits: int) -> str:
    return f"{100.0 * value:.{digits}f}"


def plot_roc(curves: dict, path, title: str, fpr: float = TARGET_FPR) -> Path:
    """Write ROC curves ({label: (background scores, signal scores)}) as a PNG, log-scale FPR, with the FPR line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    for label, (background, signal) in curves.items():
        x, y = roc_curve(background, signal)
        ax.plot(x, y, label=f"{label} (AUC {100 * auc(background, signal):.0f}%)")
    ax.axvline(fpr, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlim(max(1e-7, 0.1 / max(len(c[0]) for c in curves.values())), 1.0)
    ax.set_xlabel("background false positive rate")
    ax.set_ylabel("signal true positive rate")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
