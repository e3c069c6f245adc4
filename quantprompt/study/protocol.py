"""The study's protocol: a YAML file of methods, settings and claims, read and checked before any run starts.

The protocol is the pre-registration: it fixes the datasets, seeds, shots, recipes (each method's trainer,
config and options), the statistic and the verdict rule before a run exists, so that no choice can follow a
result. Everything here is plain data; a missing or ill-typed key is one ``ProtocolError`` naming the key.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

__all__ = ["ProtocolError", "Method", "Claim", "Protocol", "load_protocol", "parse_protocol", "TESTS",
           "SETTINGS", "default_protocol_path"]

TESTS = ("greater", "less", "equivalent", "noninferior")
SETTINGS = ("base2new", "dg", "xd", "fewshot")
_METRICS = {"base2new": ("base", "new", "H"), "dg": ("accuracy",), "xd": ("accuracy",), "fewshot": ("accuracy",)}
_EPOCH_METRIC = re.compile(r"^(base|new)@(last|\d+)$")
_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*$")


class ProtocolError(ValueError):
    """A protocol file that cannot be run: the message names the key and what it must hold."""


@dataclass(frozen=True)
class Method:
    """One recipe: ``scripts/<scripts>/*.sh`` with ``--cfg <config>`` and extra ``KEY VALUE`` options."""

    id: str
    trainer: str
    config: str
    scripts: str
    opts: tuple[tuple[str, str], ...] = ()

    @property
    def zero_shot(self) -> bool:
        """Learns nothing and samples nothing: one run per dataset serves every seed (the demo's rule; the PTQ
        zero-shot rows calibrate on seeded samples, so they run per seed)."""
        return self.trainer == "ZeroshotCLIP"


@dataclass(frozen=True)
class Claim:
    """One statement of a paper, as a paired comparison with a direction."""

    id: str
    source: str          # where the paper says it: "QPrompt Table 1"
    statement: str
    setting: str         # base2new | dg | xd | fewshot
    method: str
    baseline: str
    metric: str          # base | new | H | accuracy | base@E | new@E
    test: str            # greater | less | equivalent | noninferior
    baseline_metric: str = ""

    @property
    def metrics(self) -> tuple[str, str]:
        return self.metric, self.baseline_metric or self.metric


@dataclass
class Protocol:
    path: Optional[Path]
    clip: str
    seeds: list[int]
    shots: int
    per_class: tuple[int, int, int]
    confidence: float
    multiplicity: str
    margin: float
    methods: dict[str, Method]
    settings: dict[str, dict[str, Any]]
    claims: list[Claim]
    changes: list[str] = field(default_factory=list)

    def claim(self, claim_id: str) -> Claim:
        for c in self.claims:
            if c.id == claim_id:
                return c
        raise ProtocolError(f"unknown claim {claim_id!r}; claims: {', '.join(c.id for c in self.claims)}")

    def select(self, claim_ids: Optional[Sequence[str]]) -> Protocol:
        """The protocol restricted to ``claim_ids`` (and so to the runs they need)."""
        if not claim_ids:
            return self
        chosen = [self.claim(c) for c in claim_ids]
        return Protocol(self.path, self.clip, self.seeds, self.shots, self.per_class, self.confidence,
                        self.multiplicity, self.margin, self.methods, self.settings, chosen, self.changes)


def default_protocol_path() -> Path:
    """``configs/study/claims.yaml`` of this checkout."""
    from quantprompt.configs import configs_dir

    return configs_dir() / "study" / "claims.yaml"


def _fail(key: str, what: str) -> ProtocolError:
    return ProtocolError(f"protocol key {key!r} {what}")


def _get(node: Any, key: str, where: str, kind: Union[type, tuple[type, ...]], default: Any = ...) -> Any:
    full = f"{where}.{key}" if where else key
    if not isinstance(node, dict):
        raise _fail(where or "<top>", "must be a mapping")
    if key not in node:
        if default is ...:
            raise _fail(full, "is missing")
        return default
    value = node[key]
    ok = isinstance(value, kind) and not (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple)
                                                                                    else (kind,)))
    if not ok:
        names = "/".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise _fail(full, f"must be {names}, got {value!r}")
    return value


def _int_list(node: Any, key: str, where: str, lo: int, unique: bool = True) -> list[int]:
    values = _get(node, key, where, list)
    full = f"{where}.{key}" if where else key
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < lo for v in values):
        raise _fail(full, f"must be a non-empty list of integers >= {lo}, got {values!r}")
    if unique and len(set(values)) != len(values):
        raise _fail(full, f"lists a value twice: {values!r}")
    return list(values)


def _str_list(node: Any, key: str, where: str) -> list[str]:
    values = _get(node, key, where, list)
    full = f"{where}.{key}" if where else key
    if not values or any(not isinstance(v, str) or not v for v in values):
        raise _fail(full, f"must be a non-empty list of names, got {values!r}")
    return list(values)


def parse_protocol(data: Any, path: Optional[Path] = None) -> Protocol:
    """Check a loaded protocol mapping; raise :class:`ProtocolError` naming the first bad key."""
    from quantprompt.world.datasets import resolve

    if not isinstance(data, dict):
        raise ProtocolError("a protocol file must hold a mapping (clip, seeds, methods, settings, claims ...)")
    version = _get(data, "version", "", int)
    if version != 1:
        raise _fail("version", f"must be 1 (this reader's), got {version!r}")
    clip = _get(data, "clip", "", str)
    from quantprompt.world.cache import PROFILES

    if clip not in PROFILES:
        raise _fail("clip", f"must be a world CLIP profile ({', '.join(PROFILES)}), got {clip!r}")
    seeds = _int_list(data, "seeds", "", 0)
    shots = _get(data, "shots", "", int)
    per_class = _int_list(data, "per_class", "", 1, unique=False)
    if len(per_class) != 3:
        raise _fail("per_class", f"must be [train, val, test] images per class, got {per_class!r}")
    if not 1 <= shots <= per_class[0]:
        raise _fail("shots", f"must be in 1..{per_class[0]} (per_class's train images), got {shots!r}")
    confidence = float(_get(data, "confidence", "", (int, float)))
    if not 0.5 <= confidence < 1:
        raise _fail("confidence", f"must be in [0.5, 1), got {confidence!r}")
    multiplicity = _get(data, "multiplicity", "", str)
    if multiplicity not in ("holm", "none"):
        raise _fail("multiplicity", f"must be holm or none, got {multiplicity!r}")
    margin = float(_get(data, "margin", "", (int, float)))
    if margin <= 0:
        raise _fail("margin", f"must be > 0 (accuracy points), got {margin!r}")

    methods: dict[str, Method] = {}
    for mid, spec in _get(data, "methods", "", dict).items():
        where = f"methods.{mid}"
        if not isinstance(mid, str) or not _ID.match(mid):
            raise _fail(where, "is not a valid method id (letters, digits, _ . -)")
        opts = _get(spec, "opts", where, dict, {})
        for k, v in opts.items():
            if not isinstance(k, str) or not re.match(r"^[A-Z][A-Z0-9_]*(\.[A-Z0-9_]+)+$", k):
                raise _fail(f"{where}.opts", f"has a key {k!r} that is not a config key (e.g. TRAINER.QPROMPT.BITS)")
            if isinstance(v, (dict, list)):
                raise _fail(f"{where}.opts.{k}", f"must be a plain value, got {v!r}")
        methods[mid] = Method(mid, _get(spec, "trainer", where, str), _get(spec, "config", where, str),
                              _get(spec, "scripts", where, str),
                              tuple((k, str(v)) for k, v in opts.items()))

    def known_methods(key: str, names: list[str]) -> list[str]:
        for n in names:
            if n not in methods:
                raise _fail(key, f"names an unknown method {n!r}; methods: {', '.join(methods)}")
        return names

    def datasets(key: str, names: list[str]) -> list[str]:
        out = []
        for n in names:
            try:
                out.append(resolve(n).config)
            except ValueError as err:
                raise _fail(key, str(err)) from None
        return out

    settings: dict[str, dict[str, Any]] = {}
    raw_settings = _get(data, "settings", "", dict)
    for name, node in raw_settings.items():
        where = f"settings.{name}"
        if name not in SETTINGS:
            raise _fail(where, f"is not a setting; settings: {', '.join(SETTINGS)}")
        s: dict[str, Any] = {"methods": known_methods(f"{where}.methods", _str_list(node, "methods", where))}
        if name == "base2new":
            s["datasets"] = datasets(f"{where}.datasets", _str_list(node, "datasets", where))
            s["per_epoch"] = known_methods(f"{where}.per_epoch", list(_get(node, "per_epoch", where, list, [])))
            s["per_epoch_datasets"] = datasets(f"{where}.per_epoch_datasets",
                                               list(_get(node, "per_epoch_datasets", where, list, s["datasets"])))
            if not set(s["per_epoch_datasets"]) <= set(s["datasets"]):
                raise _fail(f"{where}.per_epoch_datasets", f"must be among settings.base2new.datasets "
                                                           f"({', '.join(s['datasets'])})")
        elif name in ("dg", "xd"):
            s["source"] = datasets(f"{where}.source", [_get(node, "source", where, str)])[0]
            s["targets"] = datasets(f"{where}.targets", _str_list(node, "targets", where))
        else:
            s["datasets"] = datasets(f"{where}.datasets", _str_list(node, "datasets", where))
            s["shots"] = _int_list(node, "shots", where, 1)
            if max(s["shots"]) > per_class[0]:
                raise _fail(f"{where}.shots", f"must be <= per_class's train images ({per_class[0]})")
        settings[name] = s

    claims: list[Claim] = []
    for i, node in enumerate(_get(data, "claims", "", list)):
        where = f"claims[{i}]"
        cid = _get(node, "id", where, str)
        where = f"claims.{cid}"
        c = Claim(cid, _get(node, "source", where, str), _get(node, "statement", where, str),
                  _get(node, "setting", where, str), _get(node, "method", where, str),
                  _get(node, "baseline", where, str), _get(node, "metric", where, str),
                  _get(node, "test", where, str), _get(node, "baseline_metric", where, str, ""))
        if any(c.id == other.id for other in claims):
            raise _fail(where, "is a claim id used twice")
        if c.setting not in settings:
            raise _fail(f"{where}.setting", f"must be one of the protocol's settings ({', '.join(settings)}), "
                                            f"got {c.setting!r}")
        for key, m in (("method", c.method), ("baseline", c.baseline)):
            if m not in settings[c.setting]["methods"]:
                raise _fail(f"{where}.{key}", f"names {m!r}, which settings.{c.setting}.methods does not run")
        for key, metric in zip(("metric", "baseline_metric"), c.metrics):
            m = _EPOCH_METRIC.match(metric)
            if m and c.setting == "base2new":
                side = c.method if key == "metric" else c.baseline
                if side not in settings["base2new"]["per_epoch"]:
                    raise _fail(f"{where}.{key}", f"{metric!r} needs {side!r} in settings.base2new.per_epoch")
            elif metric not in _METRICS[c.setting]:
                raise _fail(f"{where}.{key}", f"must be one of {', '.join(_METRICS[c.setting])}"
                                              f"{' or base@E / new@E' if c.setting == 'base2new' else ''} for "
                                              f"{c.setting}, got {metric!r}")
        if c.test not in TESTS:
            raise _fail(f"{where}.test", f"must be one of {', '.join(TESTS)}, got {c.test!r}")
        if c.method == c.baseline and c.metrics[0] == c.metrics[1]:
            raise _fail(where, "compares a method's metric with itself")
        claims.append(c)
    if not claims:
        raise _fail("claims", "must list at least one claim")
    changes = [str(x) for x in _get(data, "changes", "", list, [])]
    return Protocol(path, clip, seeds, shots, tuple(per_class), confidence, multiplicity, margin, methods,
                    settings, claims, changes)


def load_protocol(path: Union[str, Path, None] = None) -> Protocol:
    """Read and check a protocol file (default: :func:`default_protocol_path`)."""
    import yaml

    p = Path(path) if path else default_protocol_path()
    if not p.is_file():
        raise FileNotFoundError(f"protocol file {p}: no such file (the default is configs/study/claims.yaml)")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ProtocolError(f"{p}: not valid YAML ({' '.join(str(err).split())})") from None
    try:
        return parse_protocol(data, p)
    except ProtocolError as err:
        raise ProtocolError(f"{p}: {err}") from None
