"""A report as a table on the terminal, and as JSON values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def print_summary(report: dict[str, Any], file=None) -> None:
    """Readable summary: per-class table, then the headline metrics and skip counts."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=file) if file is not None else Console()
    model = report.get("model", {})
    title = f"{model.get('name', '?')} {model.get('version', '')} on {report.get('dataset')} ({report.get('split')})"
    if "folds" in report:
        title += f", {len(report['folds'])} folds pooled"

    def table(rep: dict[str, Any], heading: str) -> Table:
        t = Table(title=heading)
        for col in ("class", "precision", "recall", "f1", "support", "roc_auc"):
            t.add_column(col, justify="left" if col == "class" else "right")
        for name, row in rep["per_class"].items():
            t.add_row(name, _fmt(row["precision"]), _fmt(row["recall"]), _fmt(row["f1"]), str(row["support"]),
                      _fmt(row["roc_auc"]))
        return t

    def headline(rep: dict[str, Any]) -> str:
        return (
            f"accuracy {_fmt(rep['accuracy'])}  UAR {_fmt(rep['uar'])}  macro-F1 {_fmt(rep['macro_f1'])}  "
            f"weighted-F1 {_fmt(rep['weighted_f1'])}  ECE {_fmt(rep['ece'])}  ROC-AUC {_fmt(rep['roc_auc_ovr'])}  "
            f"n {rep['n']}"
        )

    console.print(table(report, title))
    console.print(headline(report))
    if not model.get("trained", True):
        console.print("[bold]note:[/bold] the model's weights for this modality are untrained: these numbers are chance")
    for name, rep in (report.get("splits") or {}).items():
        console.print(f"  split {name}: {headline(rep)}")
    for name, rep in (report.get("folds") or {}).items():
        console.print(f"  {name} ({', '.join(rep['speakers'])}): {headline(rep)}")
    if report.get("sentiment"):
        console.print(table(report["sentiment"], "sentiment"))
        console.print(f"sentiment: {headline(report['sentiment'])}")
    for name, why in (report.get("folds_unused") or {}).items():
        console.print(f"  {name} not used: {why}", markup=False, highlight=False)
    if report.get("unevaluated_speakers"):
        console.print(f"speakers no fold held out (not evaluated): {', '.join(report['unevaluated_speakers'])}")
    skipped = report.get("skipped") or {}
    if skipped:
        console.print(f"skipped {sum(skipped.values())}:")
        for reason, count in skipped.items():
            console.print(f"  {count:6d}  {reason}", markup=False, highlight=False)
    else:
        console.print("skipped: none")


def jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return obj
