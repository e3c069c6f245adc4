"""Tables as text: terminal, GitHub markdown, LaTeX (booktabs) or CSV."""

from __future__ import annotations

from typing import Any

from .aggregate import Stat
from .report import Report

__all__ = ["FORMATS", "render"]

FORMATS = ("terminal", "github", "latex", "csv")


def _fmt(cell: Any, decimals: int, show_spread: bool, missing: str = "-") -> str:
    if cell is None:
        return missing
    if isinstance(cell, Stat):
        text = f"{cell.mean:.{decimals}f}"
        if show_spread and cell.spread is not None:
            text += f" ± {cell.spread:.{decimals}f}"
        if not cell.complete:
            text += f" (n={cell.n})"
        return text
    if isinstance(cell, float):
        return f"{cell:.{decimals}f}"
    return str(cell)


def _latex_escape(text: str) -> str:
    for a, b in (
        ("\\", r"\textbackslash{}"),
        ("&", r"\&"),
        ("%", r"\%"),
        ("_", r"\_"),
        ("#", r"\#"),
        ("±", r"$\pm$"),
        ("·", r"$\cdot$"),
    ):
        text = text.replace(a, b)
    return text


def _latex_tabular(headers: list[str], cells: list[list[str]]) -> str:
    """booktabs tabular; cells are escaped here (bold marks from ``bold_best`` are kept)."""

    def esc(text: str) -> str:
        if text.startswith(_BOLD[0]) and text.endswith(_BOLD[1]):
            return "\\textbf{" + _latex_escape(text[len(_BOLD[0]) : -len(_BOLD[1])]) + "}"
        return _latex_escape(text)

    lines = ["\\begin{tabular}{l" + "r" * (len(headers) - 1) + "}", "\\toprule"]
    lines.append(" & ".join(_latex_escape(h) for h in headers) + " \\\\")
    lines.append("\\midrule")
    for row in cells:
        lines.append(" & ".join(esc(c) for c in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


_BOLD = ("\x00B<", ">B\x00")  # placeholder around best cells, turned into **x** or \textbf{x}


def _best_cells(rows: list[list[Any]]) -> set[tuple[int, int]]:
    """(row, column) of the highest numeric value of each column (ties: all of them)."""
    best: set[tuple[int, int]] = set()
    n_cols = max((len(r) for r in rows), default=0)
    for j in range(1, n_cols):
        vals = {}
        for i, row in enumerate(rows):
            c = row[j] if j < len(row) else None
            v = c.mean if isinstance(c, Stat) else c if isinstance(c, float) else None
            if v is not None:
                vals[i] = v
        if len(vals) > 1:
            top = max(vals.values())
            best |= {(i, j) for i, v in vals.items() if v == top}
    return best


def render(
    report: Report,
    fmt: str = "terminal",
    decimals: int = 2,
    show_spread: bool = False,
    bold_best: bool = False,
) -> str:
    """Tables and the warnings block as text in one of ``FORMATS``.

    ``bold_best``: the highest value of each column in bold (GitHub ``**x**``, LaTeX ``\\textbf``), as the papers
    mark the best method; ignored for terminal and csv.

    csv: one block per table (a ``# title`` line, a header row, the rows; blocks separated by a blank line);
    warnings are then left to the caller (the CLI prints them to stderr). LaTeX: booktabs tables in ``table``
    environments with the caption; warnings as ``%`` comments.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    from tabulate import tabulate

    out: list[str] = []
    for t in report.tables:
        cells = [[_fmt(c, decimals, show_spread, "" if fmt == "csv" else "-") for c in row] for row in t.rows]
        if bold_best and fmt in ("github", "latex"):
            for i, j in _best_cells(t.rows):
                cells[i][j] = _BOLD[0] + cells[i][j] + _BOLD[1]
            if fmt == "github":
                cells = [[c.replace(_BOLD[0], "**").replace(_BOLD[1], "**") for c in row] for row in cells]
        caption = t.caption + (f" Cells: mean ± {t.spread}." if show_spread else "")
        if fmt == "csv":
            import csv
            import io

            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            writer.writerow([f"# {t.title}"])
            writer.writerow(t.headers)
            writer.writerows(cells)
            out.append(buf.getvalue())
        elif fmt == "latex":
            body = _latex_tabular(t.headers, cells)
            out.append(
                "\\begin{table}[t]\n\\centering\n\\caption{"
                + _latex_escape(t.title)
                + ". "
                + _latex_escape(caption)
                + "}\n"
                + body
                + "\\end{table}\n"
            )
        elif fmt == "github":
            body = tabulate(cells, headers=t.headers, tablefmt="github", disable_numparse=True)
            out.append(f"**{t.title}**\n\n{body}\n\n_{caption}_\n")
        else:
            body = tabulate(cells, headers=t.headers, tablefmt="simple", disable_numparse=True)
            out.append(f"{t.title}\n{'=' * len(t.title)}\n{body}\n{caption}\n")
    if report.warnings and fmt != "csv":
        if fmt == "latex":
            out.append("% Warnings:\n" + "\n".join(f"% - {w}" for w in report.warnings) + "\n")
        elif fmt == "github":
            out.append("> **Warnings**\n>\n" + "\n".join(f"> - {w}" for w in report.warnings) + "\n")
        else:
            out.append("Warnings:\n" + "\n".join(f"  - {w}" for w in report.warnings) + "\n")
    return "\n".join(out)
