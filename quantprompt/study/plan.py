"""From a protocol to the script calls that run it: one ``quantprompt.grid`` of the real per-setting scripts.

Each method writes under its own output root (``<output>/runs/<method id>``): two recipes of one trainer and
config (QCoOp with and without normalization) would otherwise share CoOp's output folders. Every call carries
its own script options (``--data``, ``--output``, ``--cfg``, ``--shots``, then ``KEY VALUE`` pairs) and the
method id as its tag, so the grid's planner asks the script what it would do, skips finished runs and resumes
unfinished ones, exactly as for a benchmark grid (docs/grid.md, "Any calls, any mix").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .protocol import Method, Protocol

__all__ = ["StudyLayout", "calls_for", "method_root", "needed_methods", "needed_datasets"]


@dataclass(frozen=True)
class StudyLayout:
    """Where a study reads and writes: its output folder, the data it writes there and the CLIP it uses."""

    output: Path
    clip_path: Path
    matched_noise_std: Optional[str] = None  # "matched" NOISE_STD, measured when the study starts

    @property
    def data(self) -> Path:
        return self.output / "data"

    @property
    def runs(self) -> Path:
        return self.output / "runs"

    @property
    def logs(self) -> Path:
        return self.output / "logs"


def method_root(layout: StudyLayout, method: str) -> Path:
    return layout.runs / method


def needed_methods(protocol: Protocol) -> dict[str, set[str]]:
    """Per setting, the methods its claims compare (only those run: ``--claims`` picks a subset)."""
    out: dict[str, set[str]] = {}
    for c in protocol.claims:
        out.setdefault(c.setting, set()).update((c.method, c.baseline))
    return out


def needed_datasets(protocol: Protocol) -> list[str]:
    """Every dataset the chosen claims' settings read, in a stable order."""
    names: list[str] = []
    for setting in needed_methods(protocol):
        s = protocol.settings[setting]
        for d in s.get("datasets", []) + ([s["source"]] if "source" in s else []) + s.get("targets", []):
            if d not in names:
                names.append(d)
    return names


def _opts(method: Method, layout: StudyLayout, per_epoch: bool) -> list[str]:
    opts = {"MODEL.BACKBONE.NAME": str(layout.clip_path)}
    for key, value in method.opts:
        if key == "TRAINER.QPROMPT.NOISE_STD" and value == "matched":
            if layout.matched_noise_std is None:
                raise ValueError(f"method {method.id}: NOISE_STD 'matched' needs the measured quantization error")
            value = layout.matched_noise_std
        opts[key] = value
    if per_epoch:
        opts.update({"TEST.PER_EPOCH": "True", "TEST.PER_EPOCH_NEW": "True"})
    return [item for pair in opts.items() for item in pair]


def calls_for(protocol: Protocol, layout: StudyLayout) -> list:
    """The grid calls of the chosen claims, seed by seed: every setting and method of seed 1, then seed 2, ...,
    so that a study stopped early holds every claim at fewer seeds rather than some claims at none (the grid
    runs them in this order, two at a time; finished runs are skipped whatever the order)."""
    from quantprompt.grid.plan import Call

    wanted = needed_methods(protocol)
    calls: list[Call] = []
    first_seed = protocol.seeds[0]
    for seed in protocol.seeds:
        for setting in ("base2new", "dg", "xd", "fewshot"):
            if setting not in wanted:
                continue
            s = protocol.settings[setting]
            for m in (protocol.methods[name] for name in s["methods"] if name in wanted[setting]):
                if m.zero_shot and seed != first_seed:
                    continue
                common = ("--data", str(layout.data), "--output", str(method_root(layout, m.id)), "--cfg", m.config)
                shots = ("--shots", str(protocol.shots))

                def call(script: str, args: tuple, options: tuple, per_epoch: bool = False, m: Method = m) -> Call:
                    return Call(m.scripts, script, args, opts=(*options, "--", *_opts(m, layout, per_epoch)),
                                tag=m.id)

                if setting == "base2new":
                    for d in s["datasets"]:
                        per_epoch = m.id in s["per_epoch"] and d in s["per_epoch_datasets"]
                        calls += [call(script, (d, str(seed)), (*common, *shots), per_epoch)
                                  for script in ("base2new_train.sh", "base2new_test.sh")]
                elif setting in ("dg", "xd"):
                    calls.append(call(f"{setting}_train.sh", (str(seed), s["source"]), (*common, *shots)))
                    calls += [call(f"{setting}_test.sh", (t, str(seed), s["source"]), (*common, *shots))
                              for t in s["targets"]]
                else:
                    calls += [call("fewshot.sh", (d, str(k), str(seed)), common)
                              for d in s["datasets"] for k in s["shots"]]
    return calls
