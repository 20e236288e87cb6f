"""The challenger beside what it must beat (the champion; a baseline once one is fitted), as a bar chart."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_accuracies(accuracies: dict[str, float | None], path: str | Path, title: str = "test accuracy") -> Path:
    """One bar per model that has a score (``None``: not there, e.g. no champion yet), value on top."""
    shown = {name: value for name, value in accuracies.items() if value is not None}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(1.4 * len(shown) + 1.6, 3.2))
    bars = ax.bar(list(shown), list(shown.values()), color=["tab:blue", "tab:gray", "tab:orange"][: len(shown)])
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in shown.values()], fontsize=9)
    low = min(shown.values(), default=0.0)
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
