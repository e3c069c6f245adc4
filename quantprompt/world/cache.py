"""The pretrained world CLIP on disk: one safetensors file per profile, rebuilt when it does not fit.

The file's metadata records the world version and every pretraining setting. ``ensure_clip`` reuses a file
only when both match; a stale, truncated, corrupt or foreign file is pretrained again with a one-line notice
(never a crash), and the new file is written atomically (temporary file + rename), so an interrupted run never
leaves a half file that a later run would trust.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .attributes import WORLD_VERSION
from .pretrain import DEFAULT, QUICK, PretrainSettings

__all__ = ["PROFILES", "META_KEY", "CachedCLIP", "clip_path", "ensure_clip", "read_metadata", "check_cached"]

META_KEY = "quantprompt_world"
# profile -> (settings, spec name for quantprompt.clip.load; the file is <spec>.safetensors)
PROFILES: dict[str, tuple[PretrainSettings, str]] = {"default": (DEFAULT, "world-vit"),
                                                     "quick": (QUICK, "world-vit-quick")}


@dataclass
class CachedCLIP:
    """Where the world CLIP is, whether it was just pretrained, and its recorded metadata."""

    path: Path
    spec: str
    built: bool
    metadata: dict[str, Any]


def clip_path(profile: str = "default", cache_dir: Optional[Union[str, Path]] = None) -> Path:
    from quantprompt.clip import WORLD_SPECS, quantprompt_cache_dir

    if profile not in PROFILES:
        raise ValueError(f"unknown world CLIP profile {profile!r}; known: {', '.join(PROFILES)}")
    return quantprompt_cache_dir(cache_dir) / WORLD_SPECS[PROFILES[profile][1]]


def _expected(settings: PretrainSettings) -> dict[str, Any]:
    return {"world_version": WORLD_VERSION, "settings": settings.as_dict()}


def read_metadata(path: Union[str, Path]) -> dict[str, Any]:
    """The world metadata of a cached file; raises ValueError when the file is unreadable or foreign."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise ValueError(f"truncated or corrupt ({type(err).__name__}: {str(err)[:120]})") from err
    if META_KEY not in meta:
        raise ValueError("not a world CLIP (no world metadata)")
    try:
        return json.loads(meta[META_KEY])
    except ValueError as err:
        raise ValueError("unreadable world metadata") from err


def check_cached(path: Path, settings: PretrainSettings) -> Optional[str]:
    """None when ``path`` holds a loadable world CLIP pretrained with ``settings`` by this world version,
    else why not (for the one-line notice)."""
    if not path.exists():
        return "missing"
    try:
        meta = read_metadata(path)
    except ValueError as err:
        return str(err)
    expected = _expected(settings)
    if meta.get("world_version") != expected["world_version"]:
        return f"stale (world version {meta.get('world_version')}, now {WORLD_VERSION})"
    if meta.get("settings") != expected["settings"]:
        return "stale (pretrained with other settings)"
    from quantprompt.clip import CLIPLoadError, load_weights

    try:
        load_weights(path)
    except CLIPLoadError as err:
        return f"unloadable ({str(err)[:160]})"
    return None


def _save(model: Any, path: Path, metadata: dict[str, Any]) -> None:
    from quantprompt.clip.build import HEADS_KEY
    from quantprompt.safetensors_io import save_atomic

    heads = model.transformer.resblocks[0].attn.num_heads
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_atomic(state, path, metadata={"format": "pt", HEADS_KEY: str(heads),
                                       META_KEY: json.dumps(metadata, sort_keys=True)})


def ensure_clip(profile: str = "default", cache_dir: Optional[Union[str, Path]] = None,
                settings: Optional[PretrainSettings] = None, progress: bool = True,
                log: Callable[[str], None] = print) -> CachedCLIP:
    """Return the cached world CLIP of ``profile``, pretraining it first when missing or unusable.

    ``settings`` overrides the profile's (tests use a smaller budget); the file records them, so a later call
    with other settings rebuilds it.
    """
    import time

    settings = settings or PROFILES[profile][0]
    path = clip_path(profile, cache_dir)
    problem = check_cached(path, settings)
    if problem is None:
        return CachedCLIP(path, PROFILES[profile][1], built=False, metadata=read_metadata(path))
    if problem != "missing":
        log(f"world CLIP cache {path} is {problem}: pretraining it again")
    else:
        log(f"pretraining the world CLIP ({settings.steps} steps) into {path}")
    from .pretrain import pretrain, probe_zero_shot

    start = time.perf_counter()
    model = pretrain(settings, progress=progress)
    seconds = time.perf_counter() - start
    metadata = {**_expected(settings), "pretrain_seconds": round(seconds, 1),
                "probe_zero_shot": round(probe_zero_shot(model), 2)}
    _save(model, path, metadata)
    log(f"world CLIP pretrained in {seconds:.0f} s; zero-shot {metadata['probe_zero_shot']:.1f}% on the "
        f"64-class probe (chance 1.6%)")
    return CachedCLIP(path, PROFILES[profile][1], built=True, metadata=metadata)
