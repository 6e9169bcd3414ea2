"""results/search_curves.png: the best training objective so far against evaluations, for each task of the
main table (TaRot's BO and its random-search control)."""

from __future__ import annotations

from pathlib import Path

from tarot.report_select import Selection
from tarot.runs import atomic_write

LABELS = {"bo": "TaRot BO", "random": "random search"}


def search_curves(selection: Selection, path: Path) -> None:
    """Write the figure (nothing when the main table is empty); the same runs give the same bytes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks: dict[str, dict[str, list[float]]] = {}
    for (_, task), by_optimizer in selection.main.items():
        for optimizer, run in by_optimizer.items():
            values = [row["value"] for row in run.history]
            tasks.setdefault(task, {})[optimizer] = [max(values[: i + 1]) for i in range(len(values))]
    if not tasks:
        return
    columns = min(3, len(tasks))
    rows = (len(tasks) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    for ax, (task, curves) in zip(axes.flat, sorted(tasks.items()), strict=False):
        for optimizer, best in sorted(curves.items()):
            ax.plot(range(1, len(best) + 1), best, label=LABELS[optimizer])
        ax.set_title(task)
        ax.set_xlabel("evaluations")
        ax.set_ylabel("best training objective")
        ax.legend()
    for ax in list(axes.flat)[len(tasks) :]:
        ax.axis("off")
    figure.tight_layout()
    atomic_write(path, lambda tmp: figure.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(figure)
