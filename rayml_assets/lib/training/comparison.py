"""The challenger beside what it must beat (the champion, the classical baselines), as a bar chart."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rayml_assets.lib.common.storage_options import StorageSettings  # noqa: E402
from rayml_assets.lib.common.figures import write_png  # noqa: E402

# By position in the caller's mapping, so a missing bar (no champion yet) shifts no colour.
BAR_COLOURS = ("tab:blue", "tab:gray", "tab:orange", "tab:olive", "tab:purple", "tab:brown")
LINE_STYLES = ("--", ":", "-.")


def plot_accuracies(
    accuracies: dict[str, float | None],
    uri: str,
    title: str = "test accuracy",
    lines: dict[str, float | None] | None = None,
    storage: StorageSettings | None = None,
) -> str:
    """The PNG at ``uri`` (a path or any fsspec URI): one bar per model that has a score (``None``: not there, e.g. no champion yet), value on top.

    ``lines``: horizontal lines across the bars, labelled in a legend (e.g. the accuracy a
    challenger must exceed to pass the gate); ``None`` values are left out.
    """
    colours = {name: BAR_COLOURS[i % len(BAR_COLOURS)] for i, name in enumerate(accuracies)}
    shown = {name: value for name, value in accuracies.items() if value is not None}
    drawn = {label: value for label, value in (lines or {}).items() if value is not None}
    fig, ax = plt.subplots(figsize=(1.4 * len(shown) + 1.6, 3.2))
    bars = ax.bar(list(shown), list(shown.values()), color=[colours[name] for name in shown])
    ax.bar_label(bars, labels=[f"{v:.3f}" for v in shown.values()], fontsize=9)
    for i, (label, value) in enumerate(drawn.items()):
        ax.axhline(value, color="tab:red", linestyle=LINE_STYLES[i % len(LINE_STYLES)], linewidth=1.2, label=label)
    if drawn:
        ax.legend(fontsize=7, loc="best", framealpha=0.9)
    low = min([*shown.values(), *drawn.values()], default=0.0)
    high = max([1.0, *drawn.values()])  # a margin can put the line above 1.0: still draw it
    ax.set_ylim(max(0.0, low - 0.1), high + 0.05)
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(title)
    fig.tight_layout()
    return write_png(fig, uri, dpi=90, storage=storage)
