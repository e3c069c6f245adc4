"""The paper's figures as PNG files (matplotlib, Agg backend; imported only here).

* :func:`fewshot_curves` -- accuracy vs shots per method, averaged over datasets (Fig. 5);
* :func:`epoch_curves` -- base and new accuracy vs epoch, one curve per noise level / bit width (Figs. 2, 7),
  from the per-epoch evaluations of ``TEST.PER_EPOCH`` runs (``per_epoch_eval.json``, else the log lines);
* :func:`weight_histograms` -- histograms of the prompt weights per epoch (Fig. 3);
* :func:`kl_trend` -- KL divergence between the weight distributions of adjacent epochs (Fig. 6),
* :func:`method_bars` -- base, new and H per method (``quantprompt demo``'s summary, and noise vs quantization);
* :func:`accuracy_vs_bits` -- base, new and H against the prompt's bit width, full precision as a reference,

the last two from ``<run>/prompt_snapshots/epoch-<e>.safetensors`` (our trainers'
``TRAIN.SAVE_PROMPT_SNAPSHOTS``; epoch 0 is the initial prompt). KL between epochs: both epochs' weights are
binned on the same edges (``bins`` equal-width bins over the range of the two) and ``KL(p_e || p_(e-1)) = sum
p_e log(p_e / p_(e-1))`` is taken on the bin frequencies smoothed by ``eps`` so an empty bin gives no
infinity.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np

__all__ = [
    "fewshot_curves",
    "epoch_curves",
    "weight_histograms",
    "kl_trend",
    "read_snapshots",
    "read_per_epoch",
    "kl_divergence",
    "epoch_data",
    "method_bars",
    "accuracy_vs_bits",
]

PathLike = Union[str, Path]
_SNAP_RE = re.compile(r"(\d+)")
_SNAP_EXT = (".safetensors", ".pt", ".pth", ".npz", ".npy")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, out: PathLike) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=150, bbox_inches="tight", format="png")
    _pyplot().close(fig)
    return out


# ----------------------------------------------------------------------------------------------------------
# few-shot (Fig. 5)


def fewshot_curves(
    source: Union[PathLike, Mapping[str, Any]],
    out: PathLike,
    keyword: str = "accuracy",
    title: str = "Few-shot learning: average over datasets",
) -> Path:
    """Accuracy vs shots. ``source``: an output root, or ``Report.data["fewshot"]``-like mapping with
    ``shots``, ``curves`` ``{method: {shots: acc}}`` and optional ``zeroshot`` ``{method: [acc, ...]}``.
    Zero-shot CLIP is drawn as a dashed horizontal line."""
    if isinstance(source, (str, Path)):
        from .tables import build_report

        report = build_report(source, setting="fewshot", keyword=keyword, sizes=False)
        data = report.data.get("fewshot")
        if not data or not data.get("curves"):
            raise ValueError(
                f"{source}: no few-shot runs found (expected <dataset>/<trainer>/<cfg>_<K>shots/seed<N> "
                "or fewshot/<dataset>/shots_<K>/<trainer>/<cfg>/seed<N> with log.txt)"
            )
    else:
        data = source
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    shots_all = sorted({int(s) for c in data["curves"].values() for s in c})
    for label, curve in data["curves"].items():
        xs = [s for s in sorted(curve, key=int) if curve[s] is not None]
        ax.plot([int(s) for s in xs], [curve[s] for s in xs], marker="o", label=label)
    for label, vals in (data.get("zeroshot") or {}).items():
        if vals:
            ax.axhline(float(np.mean(vals)), linestyle="--", color="gray", label=f"{label} (zero-shot)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(shots_all)
    ax.set_xticklabels([str(s) for s in shots_all])
    ax.set_xlabel("Number of labeled training examples per class (shots)")
    ax.set_ylabel(f"{keyword.replace('_', ' ').capitalize()} (%)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend()
    return _save(fig, out)


# ----------------------------------------------------------------------------------------------------------
# accuracy vs epoch (Figs. 2 and 7)


def read_per_epoch(run_dir: PathLike) -> dict[str, dict[int, float]]:
    """``{split: {epoch: accuracy}}`` of a run: ``per_epoch_eval.json`` when present, else its log lines."""
    run_dir = Path(run_dir)
    path = run_dir / "per_epoch_eval.json"
    out: dict[str, dict[int, float]] = defaultdict(dict)
    if path.is_file():
        try:
            rows = json.loads(path.read_text())
            for row in rows:
                e = int(row["epoch"])
                for k, v in row.items():
                    if k != "epoch" and isinstance(v, (int, float)):
                        out[k][e] = float(v)
            return dict(out)
        except (ValueError, KeyError, TypeError):
            pass  # fall back to the log
    from .logs import parse_log
    from .tree import find_logs

    for log in find_logs(run_dir):  # oldest first: a resumed run's later log overrides epochs it repeats
        info = parse_log(log)
        for split in info.splits():
            out[split].update(info.per_epoch(split))
    return dict(out)


def epoch_data(groups: Mapping[str, Sequence[PathLike]]) -> dict[str, dict[str, dict[int, float]]]:
    """``{label: {split: {epoch: mean accuracy over the runs having that epoch}}}``."""
    result: dict[str, dict[str, dict[int, float]]] = {}
    for label, runs in groups.items():
        acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for run in runs:
            for split, curve in read_per_epoch(run).items():
                for e, v in curve.items():
                    acc[split][e].append(v)
        result[label] = {s: {e: float(np.mean(v)) for e, v in sorted(c.items())} for s, c in acc.items()}
    return result


def _groups_from_root(root: PathLike) -> dict[str, list[Path]]:
    """train_base runs (else any runs) grouped by trainer/cfg; labelled by cfg when the trainer is shared."""
    from .tree import scan

    runs, _ = scan(root)
    chosen = [r for r in runs if r.setting == "base2new" and r.phase == "train_base"] or [
        r for r in runs if r.setting != "evaluation"
    ]
    keys = sorted({(r.trainer, r.cfg) for r in chosen})
    trainers = {t for t, _ in keys}
    groups: dict[str, list[Path]] = {}
    for t, c in keys:
        label = c if len(trainers) == 1 else f"{t} {c}"
        groups[label] = [r.path for r in chosen if (r.trainer, r.cfg) == (t, c)]
    return groups


def epoch_curves(
    source: Union[PathLike, Mapping[str, Sequence[PathLike]]],
    out: PathLike,
    splits: Sequence[str] = ("base", "new"),
    title: Optional[str] = None,
) -> Path:
    """Base and new accuracy vs epoch, one curve per group (e.g. noise level or bit width), averaged over the
    group's runs (datasets and seeds). ``source``: an output root (groups = trainer/cfg of its train_base
    runs) or ``{label: [run_dir, ...]}``."""
    groups = _groups_from_root(source) if isinstance(source, (str, Path)) else dict(source)
    data = epoch_data(groups)
    present = [s for s in splits if any(s in d for d in data.values())]
    if not present:
        found = sorted({s for d in data.values() for s in d})
        raise ValueError(
            f"no per-epoch evaluations for splits {list(splits)} (found {found or 'none'}); train "
            "with TEST.PER_EPOCH True (and TEST.PER_EPOCH_NEW True for new classes)"
        )
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(present), figsize=(5.0 * len(present), 4.0), squeeze=False)
    names = {"base": "Base (seen) classes", "new": "New (unseen) classes", "test": "Test set"}
    for ax, split in zip(axes[0], present):
        for label, d in data.items():
            curve = d.get(split)
            if curve:
                ax.plot(list(curve), list(curve.values()), marker="o", markersize=3, label=label)
        ax.set_title(names.get(split, split))
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Accuracy (%)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or "Accuracy vs epoch (mean over datasets and seeds)")
    return _save(fig, out)


# ----------------------------------------------------------------------------------------------------------
# prompt snapshots (Figs. 3 and 6)


def _snapshot_files(run_dir: Path) -> dict[int, Path]:
    folder = run_dir / "prompt_snapshots" if (run_dir / "prompt_snapshots").is_dir() else run_dir
    files: dict[int, Path] = {}
    for p in folder.iterdir() if folder.is_dir() else []:
        if p.suffix in _SNAP_EXT and p.is_file():
            nums = _SNAP_RE.findall(p.stem)
            if nums:
                files[int(nums[-1])] = p
    return dict(sorted(files.items()))


def _load_tensors(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file

            return dict(load_file(str(path)))
        except (TypeError, ValueError):  # dtypes numpy lacks (bf16): go through torch
            from safetensors.torch import load_file as load_torch

            return {k: v.float().numpy() for k, v in load_torch(str(path)).items()}
    if path.suffix in (".pt", ".pth"):
        import torch

        obj = torch.load(str(path), map_location="cpu", weights_only=True)
        obj = obj.get("state_dict", obj) if isinstance(obj, dict) else {"tensor": obj}
        return {k: v.float().numpy() for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    return {"tensor": np.load(path, allow_pickle=False)}


def read_snapshots(
    run_dir: PathLike, keys: Optional[Sequence[str]] = None, quantized: bool = False
) -> dict[int, np.ndarray]:
    """``{epoch: flattened weights}`` from a run's prompt snapshots.

    By default every latent tensor (names without ``.quantized``) is concatenated; ``quantized=True`` takes
    the ``<name>.quantized`` tensors instead (the values the model used); ``keys`` selects tensors by exact
    name or regular expression.
    """
    files = _snapshot_files(Path(run_dir))
    if not files:
        raise FileNotFoundError(
            f"{run_dir}: no prompt snapshots (expected prompt_snapshots/epoch-<e>.safetensors; "
            "train with TRAIN.SAVE_PROMPT_SNAPSHOTS True)"
        )
    out: dict[int, np.ndarray] = {}
    for epoch, path in files.items():
        tensors = _load_tensors(path)
        names = sorted(n for n in tensors if n.endswith(".quantized") == quantized)
        if keys:
            names = [n for n in names if any(n == k or re.fullmatch(k, n) for k in keys)]
        if not names:
            raise ValueError(
                f"{path}: no tensor matches {list(keys) if keys else 'the snapshot'} (has {sorted(tensors)})"
            )
        out[epoch] = np.concatenate([np.asarray(tensors[n], dtype=np.float64).ravel() for n in names])
    return out


def weight_histograms(
    run_dir: PathLike,
    out: PathLike,
    epochs: Optional[Sequence[int]] = None,
    bins: int = 60,
    keys: Optional[Sequence[str]] = None,
    quantized: bool = False,
    title: Optional[str] = None,
) -> Path:
    """Small multiples: one histogram of the prompt weights per epoch, on shared axes (Fig. 3)."""
    snaps = read_snapshots(run_dir, keys=keys, quantized=quantized)
    chosen = [e for e in (epochs or list(snaps)) if e in snaps]
    if not chosen:
        raise ValueError(
            f"{run_dir}: none of epochs {list(epochs or [])} has a snapshot (have {list(snaps)})"
        )
    if epochs is None and len(chosen) > 12:  # keep the figure readable: 12 evenly spaced epochs
        idx = np.linspace(0, len(chosen) - 1, 12).round().astype(int)
        chosen = [chosen[i] for i in sorted(set(idx))]
    lo = min(float(snaps[e].min()) for e in chosen)
    hi = max(float(snaps[e].max()) for e in chosen)
    if hi <= lo:
        hi = lo + 1e-6
    edges = np.linspace(lo, hi, bins + 1)
    cols = min(4, len(chosen))
    rows = (len(chosen) + cols - 1) // cols
    plt = _pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), squeeze=False, sharex=True)
    for ax in axes.ravel()[len(chosen) :]:
        ax.axis("off")
    for ax, e in zip(axes.ravel(), chosen):
        w = snaps[e]
        ax.hist(w, bins=edges, color="C0")
        ax.set_title(f"epoch {e} (std {w.std():.3g})", fontsize=9)
        ax.set_xlabel("Weight value")
        ax.set_ylabel("Count")
    fig.suptitle(title or f"Prompt weight distribution per epoch: {Path(run_dir).name}")
    fig.tight_layout()
    return _save(fig, out)


def kl_divergence(p_values: np.ndarray, q_values: np.ndarray, bins: int = 60, eps: float = 1e-6) -> float:
    """KL(P || Q) of two samples, binned on shared equal-width edges, smoothed by ``eps``."""
    lo = min(float(p_values.min()), float(q_values.min()))
    hi = max(float(p_values.max()), float(q_values.max()))
    if hi <= lo:
        return 0.0
    edges = np.linspace(lo, hi, bins + 1)
    p = np.histogram(p_values, bins=edges)[0].astype(np.float64) + eps
    q = np.histogram(q_values, bins=edges)[0].astype(np.float64) + eps
    p /= p.sum()
    q /= q.sum()
    return float(np.sum(p * np.log(p / q)))


def kl_trend(
    runs: Union[PathLike, Mapping[str, PathLike], Sequence[PathLike]],
    out: PathLike,
    bins: int = 60,
    keys: Optional[Sequence[str]] = None,
    title: Optional[str] = None,
) -> Path:
    """KL divergence of the prompt-weight distributions of adjacent epochs, one curve per run (Fig. 6)."""
    if isinstance(runs, (str, Path)):
        runs = {Path(runs).name: runs}
    elif not isinstance(runs, Mapping):
        runs = {str(Path(r)): r for r in runs}
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    for label, run in runs.items():
        snaps = read_snapshots(run, keys=keys)
        epochs = list(snaps)
        if len(epochs) < 2:
            raise ValueError(
                f"{run}: KL between adjacent epochs needs at least two snapshots (have {epochs})"
            )
        xs = epochs[1:]
        ys = [kl_divergence(snaps[b], snaps[a], bins=bins) for a, b in zip(epochs[:-1], epochs[1:])]
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    ax.set_xlabel("Epoch")
    ax.set_ylabel("KL(epoch e || epoch e-1) (nats)")
    ax.set_title(title or "KL divergence of prompt weights between adjacent epochs")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, out)


# ----------------------------------------------------------------------------------------------------------
# base-to-new summaries (quantprompt demo)


def method_bars(rows: Mapping[str, Mapping[str, float]], out: PathLike, title: str = "") -> Path:
    """Grouped bars of base, new and H (``rows[label] = {"base": .., "new": .., "H": ..}``, in %) per method."""
    if not rows:
        raise ValueError("method_bars: no methods to plot")
    plt = _pyplot()
    labels = list(rows)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(labels) + 1.5), 3.6))
    for k, (key, colour) in enumerate((("base", "#4c72b0"), ("new", "#dd8452"), ("H", "#55a868"))):
        vals = [rows[name][key] for name in labels]
        bars = ax.bar(x + (k - 1) * 0.27, vals, width=0.27, label=key, color=colour)
        if key == "H":
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=1)
    lo = min(min(r["base"], r["new"], r["H"]) for r in rows.values())
    hi = max(max(r["base"], r["new"], r["H"]) for r in rows.values())
    ax.set_ylim(max(0.0, lo - 10), min(100.0, hi + 8))
    ax.set_xticks(x)
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.legend(ncol=3, fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    if title:
        ax.set_title(title, pad=22)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def accuracy_vs_bits(by_bits: Mapping[int, Mapping[str, float]], out: PathLike,
                     full_precision: Optional[Mapping[str, float]] = None, title: str = "") -> Path:
    """Base, new and H (%) against bit width; ``full_precision`` (same keys) drawn as dashed lines."""
    if not by_bits:
        raise ValueError("accuracy_vs_bits: no bit widths to plot")
    plt = _pyplot()
    bits = sorted(by_bits)
    fig, ax = plt.subplots(figsize=(4.6, 3.4))
    for key, colour in (("base", "#4c72b0"), ("new", "#dd8452"), ("H", "#55a868")):
        ax.plot(bits, [by_bits[b][key] for b in bits], marker="o", color=colour, label=key)
        if full_precision is not None:
            ax.axhline(full_precision[key], color=colour, linestyle="--", linewidth=1, alpha=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xticks(bits)
    ax.set_xticklabels([str(b) for b in bits])
    ax.set_xlabel("prompt bits (dashed: full precision)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(title or "Accuracy vs bit width")
    ax.grid(alpha=0.3)
    return _save(fig, out)
