"""Command line of ``tools/parse_test_res.py`` (also ``quantprompt results``).

Two modes:

* CoOp's, unchanged usage: ``parse_test_res.py DIR`` where DIR holds ``seed*/log.txt`` (mean ± std of the
  final accuracy), ``--multi-exp`` when DIR holds several such experiment folders, ``--ci95``, ``--test-log``,
  ``--keyword``. Output lines as CoOp prints them (``* accuracy: 71.23% +- 0.45%``), plus a warnings block
  instead of an assertion error for missing or unfinished logs.
* Tables: ``parse_test_res.py OUTPUT_ROOT --table [auto|base2new|dg|xd|fewshot] --format
  terminal|github|latex|csv`` (see :mod:`quantprompt.results.tables`).
* Paired comparisons: ``parse_test_res.py OUTPUT_ROOT --table base2new --compare BASELINE [--holm]``
  (see :mod:`quantprompt.results.comparison`).

``--strict`` exits with status 1 when there is any warning; status 1 too when nothing at all was found.
"""

from __future__ import annotations

import argparse
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

from ..clierrors import OneLineParser
from .aggregate import mean, summarize
from .comparison import compare
from .logs import parse_log
from .tables import FORMATS, SETTINGS, build_report, render
from .tree import SEED_RE, find_logs

__all__ = ["main", "build_parser", "parse_seed_folder"]


def build_parser(prog: str = "parse_test_res.py") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog,
        description="Average CoOp/Dassl/QuantPrompt test results over seeds, or build paper-like tables.",
    )
    p.add_argument("directory", help="folder of seed folders (CoOp mode) or an output root (--table)")
    p.add_argument("--ci95", action="store_true", help="95%% confidence interval (Student t) instead of std")
    p.add_argument("--test-log", action="store_true", help="treat every log as eval-only (CoOp's flag)")
    p.add_argument("--multi-exp", action="store_true", help="DIR holds several experiment folders")
    p.add_argument("--keyword", default="accuracy", help="metric to read: accuracy, error, macro_f1, ...")
    p.add_argument(
        "--table",
        nargs="?",
        const="auto",
        choices=SETTINGS,
        help="build tables for a setting of the output tree (default auto: every setting found)",
    )
    p.add_argument(
        "--compare",
        metavar="BASELINE",
        help="paired differences of every method against BASELINE (a row label of the tables, e.g. CoOp) "
        "over the units both ran: mean, Student-t CI, n, p; with --table SETTING (default: every setting found)",
    )
    p.add_argument("--confidence", type=float, default=0.95, help="--compare: interval level (default 0.95)")
    p.add_argument("--holm", action="store_true", help="--compare: Holm-adjust the intervals over all rows")
    p.add_argument("--format", default="terminal", choices=FORMATS, help="table format (default terminal)")
    p.add_argument(
        "--layout",
        default="paper",
        choices=["paper", "per-dataset"],
        help="base-to-new: per-dataset columns (paper) or one small table per dataset",
    )
    p.add_argument("--seeds", type=int, nargs="+", help="expected seeds (default: every seed found)")
    p.add_argument("--no-size", action="store_true", help="leave out the Size column")
    p.add_argument("--spread", action="store_true", help="show ± std (or ± CI) in the table cells")
    p.add_argument("--decimals", type=int, default=2, help="decimals in tables (default 2)")
    p.add_argument("--bold-best", action="store_true", help="best value per column in bold (github, latex)")
    p.add_argument("-o", "--output", help="also write the tables to this file")
    p.add_argument("--strict", action="store_true", help="exit with status 1 if there is any warning")
    return p


def parse_seed_folder(
    directory: Path, keyword: str, test_log: bool, ci95: bool, warnings: list[str]
) -> Optional[OrderedDict[str, float]]:
    """CoOp's ``parse_function``: a folder of seed folders -> {metric: mean}, printing as CoOp does."""
    print(f"Parsing files in {directory}")
    subdirs = (
        sorted(
            (p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")),
            key=lambda p: p.name,
        )
        if directory.is_dir()
        else []
    )
    values: list[float] = []
    seeds: list[str] = []
    for sub in subdirs:
        logs = find_logs(sub)
        if not logs:
            if SEED_RE.match(sub.name):
                warnings.append(f"{sub}: no log.txt; left out")
            continue
        chosen = None
        for path in reversed(logs):
            info = parse_log(path, test_log=True if test_log else None)
            if info.final is not None:
                chosen = info
                break
        if chosen is None:
            info = parse_log(logs[-1], test_log=True if test_log else None)
            why = (
                "malformed log (" + "; ".join(info.problems[:2]) + ")"
                if info.problems
                else f"unfinished run, no final {keyword}"
            )
            warnings.append(f"{logs[-1]}: {why}; left out")
            continue
        if keyword not in chosen.final:
            warnings.append(f"{chosen.path}: final result has no '* {keyword}' line; left out")
            continue
        value = chosen.final[keyword]
        print(f"file: {chosen.path}. {keyword}: {value:.2f}%. ")
        values.append(value)
        seeds.append(sub.name)
    if not values:
        warnings.append(f"Nothing found in {directory}")
        return None
    st = summarize(values, ci95=ci95)
    print("===")
    print(f"Summary of directory: {directory}")
    spread = "n/a (one seed)" if st.spread is None else f"{st.spread:.2f}%"
    print(f"* {keyword}: {st.mean:.2f}% +- {spread} (n={st.n})")
    print("===")
    return OrderedDict([(keyword, st.mean)])


def _print_warnings(warnings: list[str], stream=None) -> None:
    stream = stream or sys.stdout
    if warnings:
        print("Warnings:", file=stream)
        for w in warnings:
            print(f"  - {w}", file=stream)


def main(argv: Optional[Sequence[str]] = None, prog: str = "parse_test_res.py") -> int:
    args = build_parser(prog).parse_args(argv)
    directory = Path(args.directory)
    if not directory.is_dir():
        print(f"{prog}: error: {directory} is not a directory (give the output folder of your runs)",
              file=sys.stderr)
        return 2
    if args.compare:
        try:
            report = compare(
                directory,
                args.table or "auto",
                args.compare,
                keyword=args.keyword,
                confidence=args.confidence,
                holm=args.holm,
            )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        text = render(report, fmt=args.format, decimals=args.decimals)
        print(text, end="" if text.endswith("\n") else "\n")
        if args.format == "csv":
            _print_warnings(report.warnings, sys.stderr)
        if args.output:
            Path(args.output).write_text(text)
        return 1 if (args.strict and report.warnings) else 0
    if args.table:
        report = build_report(
            directory,
            setting=args.table,
            keyword=args.keyword,
            ci95=args.ci95,
            seeds=args.seeds,
            sizes=not args.no_size,
            layout=args.layout,
        )
        text = render(
            report, fmt=args.format, decimals=args.decimals, show_spread=args.spread, bold_best=args.bold_best
        )
        print(text, end="" if text.endswith("\n") else "\n")
        if args.format == "csv":
            _print_warnings(report.warnings, sys.stderr)
        if args.output:
            Path(args.output).write_text(text)
        if not report.tables:
            return 1
        return 1 if (args.strict and report.warnings) else 0

    warnings: list[str] = []
    if args.multi_exp:
        final: dict[str, list[float]] = {}
        for sub in sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith(".")):
            res = parse_seed_folder(sub, args.keyword, args.test_log, args.ci95, warnings)
            for k, v in (res or {}).items():
                final.setdefault(k, []).append(v)
        if not final:
            _print_warnings(warnings)
            return 1
        print("Average performance")
        for k, vals in final.items():
            print(f"* {k}: {mean(vals):.2f}%")
    else:
        res = parse_seed_folder(directory, args.keyword, args.test_log, args.ci95, warnings)
        if res is None:
            _print_warnings(warnings)
            if any(SEED_RE.match(p.name) is None for p in directory.iterdir() if p.is_dir()):
                print("hint: for an output root (base2new/, evaluation/, ...) add --table", file=sys.stderr)
            return 1
    _print_warnings(warnings)
    return 1 if (args.strict and warnings) else 0
