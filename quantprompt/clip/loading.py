"""``load``: OpenAI CLIP from a name, a local file or directory, or the tiny test specs.

Why not ``clip.load``: OpenAI's download URLs answer 404 for many users, it unpickles state dicts without
``weights_only`` and it asserts on bad files. This loader looks in the cache dir first (SHA-256 checked against
the hash in OpenAI's URL), then fetches the same weights from the Hugging Face Hub (safetensors) and converts them
exactly to OpenAI's layout, and only then tries OpenAI's URL. Offline with nothing cached it raises one error that
names the file to put where. It always returns OpenAI's ``clip.model.CLIP`` and preprocess transform, so
CoOp-style code keeps working.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .build import HEADS_KEY, build_model, is_openai_layout
from .errors import CLIPFileNotFoundError, CLIPLoadError
from .hf_convert import check_hf_config, convert_hf_state_dict, is_hf_layout

__all__ = ["load", "load_weights", "available_models", "tokenize", "cache_dir", "HF_REPOS", "TINY_SPECS",
           "ENV_ROOT", "WORLD_SPECS", "ENV_CACHE", "quantprompt_cache_dir"]

logger = logging.getLogger("quantprompt.clip")

ENV_ROOT = "QUANTPROMPT_CLIP_ROOT"
DEFAULT_ROOT = "~/.cache/clip"
# OpenAI name -> Hugging Face Hub repo holding the same weights (ResNet CLIPs exist only as OpenAI files).
HF_REPOS: dict[str, str] = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
}
TINY_SPECS: dict[str, str] = {"tiny-vit": "vit", "tiny-resnet": "resnet"}
# The demo world's pretrained CLIPs (quantprompt.world): spec name -> file in the quantprompt cache dir.
WORLD_SPECS: dict[str, str] = {"world-vit": "world-vit.safetensors", "world-vit-quick": "world-vit-quick.safetensors"}
ENV_CACHE = "QUANTPROMPT_CACHE"
DEFAULT_CACHE = "~/.cache/quantprompt"
PRECISIONS = ("fp16", "fp32", "amp")
_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".safetensors", ".tar", ".ckpt")
_DOWNLOAD_TIMEOUT_S = 60


def openai_models() -> dict[str, str]:
    """OpenAI model name -> download URL (the URL's second-last segment is the file's SHA-256)."""
    from ._openai import openai_clip

    return dict(openai_clip().clip._MODELS)


def available_models() -> list[str]:
    """Names ``load`` accepts besides paths: OpenAI's model names and the tiny test specs."""
    return [*openai_models(), *TINY_SPECS, *WORLD_SPECS]


def tokenize(texts: Union[str, list[str]], context_length: int = 77, truncate: bool = False) -> Any:
    """OpenAI's ``clip.tokenize`` (re-exported so callers need one import)."""
    from ._openai import openai_clip

    return openai_clip().tokenize(texts, context_length=context_length, truncate=truncate)


def cache_dir(download_root: Optional[Union[str, Path]] = None) -> Path:
    """Where named models are looked up and stored: argument, else ``$QUANTPROMPT_CLIP_ROOT``, else ~/.cache/clip."""
    root = download_root or os.environ.get(ENV_ROOT) or DEFAULT_ROOT
    return Path(root).expanduser()


def quantprompt_cache_dir(cache: Optional[Union[str, Path]] = None) -> Path:
    """quantprompt's own cache (the demo world's CLIPs): argument, else ``$QUANTPROMPT_CACHE``, else
    ~/.cache/quantprompt."""
    root = cache or os.environ.get(ENV_CACHE) or DEFAULT_CACHE
    return Path(root).expanduser()


def load(spec: Union[str, Path], device: Any = "cpu", precision: str = "fp16",
         download_root: Optional[Union[str, Path]] = None) -> tuple[Any, Callable[[Any], Any]]:
    """Return ``(clip.model.CLIP in eval mode, preprocess)`` for ``spec``.

    ``spec``: an OpenAI name (``available_models()``), ``"hf-hub:<repo>"``, a local file (OpenAI ``.pt`` JIT
    archive or state dict, OpenAI-layout ``.safetensors``, Hugging Face ``model.safetensors`` with
    ``config.json`` beside it), a Hugging Face checkpoint directory, ``"tiny-vit"`` / ``"tiny-resnet"``, or
    ``"world-vit"`` / ``"world-vit-quick"`` (the demo world's pretrained CLIP in :func:`quantprompt_cache_dir`).
    ``precision``: ``"fp16"`` (OpenAI's mixed fp16 weights; promoted to fp32 on CPU with a one-line notice),
    ``"fp32"``, or ``"amp"`` (fp32 weights, for autocast training as in CoOp).
    """
    if precision not in PRECISIONS:
        raise CLIPLoadError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}.")
    model = _resolve(spec, download_root)
    model = _apply_precision(model, device, precision)
    from ._openai import openai_clip

    return model, openai_clip().clip._transform(model.visual.input_resolution)


def load_weights(path: Union[str, Path]) -> Any:
    """Read one local file or Hugging Face directory into an fp32 ``clip.model.CLIP`` (no precision/device)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise CLIPFileNotFoundError(f"CLIP weights not found: {path} does not exist.")
    if path.is_dir():
        return _load_hf_dir(path)
    kind = _sniff(path)
    if kind == "safetensors":
        state, metadata = _read_safetensors(path)
        heads = metadata.get(HEADS_KEY)
        return _from_state_dict(state, path, int(heads) if heads else None)
    if kind == "zip" and _is_jit_archive(path):
        return _from_state_dict(_read_jit(path), path)
    return _from_state_dict(_torch_load(path), path)


# --------------------------------------------------------------------------------------------------- resolution
def _resolve(spec: Union[str, Path], download_root: Optional[Union[str, Path]]) -> Any:
    if isinstance(spec, str) and spec in TINY_SPECS:
        from .tiny import tiny

        return tiny(seed=0, arch=TINY_SPECS[spec])
    if isinstance(spec, str) and spec in WORLD_SPECS:
        path = quantprompt_cache_dir() / WORLD_SPECS[spec]
        if not path.is_file():
            raise CLIPFileNotFoundError(
                f"the demo world's CLIP {spec!r} is not pretrained yet: {path} does not exist. Run `quantprompt "
                f"demo` (or `python -m quantprompt.world pretrain{' --quick' if spec.endswith('quick') else ''}`)"
                f" to pretrain it; ${ENV_CACHE} or --cache-dir choose the folder.")
        return load_weights(path)
    if isinstance(spec, str) and spec in openai_models():
        return _load_named(spec, cache_dir(download_root))
    if isinstance(spec, str) and spec.startswith("hf-hub:"):
        repo = spec[len("hf-hub:"):]
        try:
            config, weights = _fetch_hf(repo)
        except Exception as err:  # any download failure: say what to fetch
            raise CLIPFileNotFoundError(
                f"Hugging Face checkpoint {repo!r} is not in the Hugging Face cache and could not be downloaded "
                f"({_short(err)}). Download config.json and model.safetensors of {repo} on a machine with "
                "network (`huggingface-cli download` fills the cache) or pass the local directory instead.") from err
        return _convert_hf_files(config, weights, repo)[0]
    path = Path(spec).expanduser()
    if path.exists():
        return load_weights(path)
    text = str(spec)
    if path.suffix in _WEIGHT_SUFFIXES or text.startswith(("/", ".", "~")) or not isinstance(spec, str):
        raise CLIPFileNotFoundError(f"CLIP weights not found: {path} does not exist. Pass an existing file or "
                                    f"directory, or one of the model names {available_models()}.")
    raise CLIPLoadError(f"unknown CLIP model {text!r}: not a model name and no such file or directory. "
                        f"Available names: {available_models()}.")


def _load_named(name: str, root: Path) -> Any:
    url = openai_models()[name]
    filename = url.rsplit("/", 1)[-1]
    expected = url.split("/")[-2].lower()
    pt_file = root / filename
    converted = root / (Path(filename).stem + ".safetensors")

    if pt_file.exists():
        actual = _sha256(pt_file)
        if actual != expected:
            raise CLIPLoadError(
                f"{pt_file} does not match OpenAI's SHA-256 for {name!r} (expected {expected}, got {actual}): the "
                f"file is corrupt, truncated or another model. Delete it or replace it with the original {filename}.")
        return load_weights(pt_file)
    if converted.is_file():
        return load_weights(converted)

    tried = []
    repo = HF_REPOS.get(name)
    if repo is not None:
        try:
            config, weights = _fetch_hf(repo)
        except Exception as err:  # network/offline/missing-file errors of huggingface_hub all mean "fall through"
            tried.append(f"Hugging Face Hub {repo}: {_short(err)}")
        else:
            model, state, heads = _convert_hf_files(config, weights, repo)
            _write_cache(converted, state, heads, f"hf:{repo}")
            return model
    if _offline():
        tried.append("OpenAI URL: skipped because HF_HUB_OFFLINE is set")
    else:
        try:
            _download_url(url, pt_file, expected)
        except CLIPLoadError:
            raise
        except Exception as err:  # URLError, HTTP 404, timeouts, disk errors
            tried.append(f"OpenAI URL {url}: {_short(err)}")
        else:
            return load_weights(pt_file)

    hf_hint = (f" Or put the Hugging Face checkpoint {repo} (config.json + model.safetensors) into the Hugging "
               f"Face cache, e.g. `huggingface-cli download {repo} config.json model.safetensors` on a machine "
               "with network, then copy the cache ($HF_HOME/hub).") if repo else ""
    raise CLIPFileNotFoundError(
        f"CLIP {name!r} is not cached and could not be downloaded. Put OpenAI's file {filename} (SHA-256 "
        f"{expected}) into {root}/ (the cache dir: download_root argument, else ${ENV_ROOT}, else {DEFAULT_ROOT})."
        f"{hf_hint} Tried: {'; '.join(tried)}.")


# ------------------------------------------------------------------------------------------------- Hugging Face
def _fetch_hf(repo: str) -> tuple[Path, list[Path]]:
    """Download (or find in the HF cache, honouring HF_HUB_OFFLINE) config.json and the weights of ``repo``."""
    from huggingface_hub import hf_hub_download

    config = Path(hf_hub_download(repo_id=repo, filename="config.json"))
    try:
        weights = Path(hf_hub_download(repo_id=repo, filename="model.safetensors"))
    except Exception as first:
        try:  # older repos only carry pytorch_model.bin (a plain state dict: read with weights_only=True)
            weights = Path(hf_hub_download(repo_id=repo, filename="pytorch_model.bin"))
        except Exception:
            raise first from None
    return config, [weights]


def _convert_hf_files(config_path: Path, weights: list[Path], source: str) -> tuple[Any, dict[str, Any], int]:
    heads = check_hf_config(_read_json(config_path), str(config_path))
    hf_state: dict[str, Any] = {}
    for file in weights:
        if _sniff(file) == "safetensors":
            hf_state.update(_read_safetensors(file)[0])
        else:
            hf_state.update(_torch_load(file))
    if not is_hf_layout(hf_state):
        raise CLIPLoadError(f"{source}: the weights beside {config_path} are not in Hugging Face CLIP layout "
                            "(no text_model.* / vision_model.* tensors).")
    state = convert_hf_state_dict(hf_state, source=str(source))
    return build_model(state, transformer_heads=heads, source=str(source)), state, heads


def _load_hf_dir(directory: Path) -> Any:
    config = directory / "config.json"
    if not config.is_file():
        raise CLIPFileNotFoundError(
            f"{directory} is a directory without config.json; expected a Hugging Face CLIP checkpoint directory "
            "(config.json + model.safetensors) or pass the weight file itself.")
    check_hf_config(_read_json(config), str(config))  # early: refuse non-CLIP configs before reading weights
    index = directory / "model.safetensors.index.json"
    if (directory / "model.safetensors").is_file():
        weights = [directory / "model.safetensors"]
    elif index.is_file():
        shard_names = sorted(set(_read_json(index).get("weight_map", {}).values()))
        weights = [directory / s for s in shard_names]
        missing = [str(w) for w in weights if not w.is_file()]
        if missing or not weights:
            raise CLIPFileNotFoundError(f"{index} lists shards that are missing: {missing}.")
    elif (directory / "pytorch_model.bin").is_file():
        weights = [directory / "pytorch_model.bin"]
    else:
        raise CLIPFileNotFoundError(f"{directory} has config.json but no weights: put model.safetensors (or "
                                    "pytorch_model.bin) of the Hugging Face checkpoint beside it.")
    return _convert_hf_files(config, weights, str(directory))[0]


def _write_cache(target: Path, state: Mapping[str, Any], heads: int, source: str) -> None:
    """Store converted weights as OpenAI-layout safetensors so the next load needs neither network nor HF."""
    from safetensors.torch import save_file

    tmp = target.with_name(target.name + f".part-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous() for k, v in state.items()}
        save_file(tensors, str(tmp), metadata={"format": "pt", HEADS_KEY: str(heads), "source": source})
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        logger.warning("could not cache converted CLIP weights at %s (%s); they will be converted again next time",
                       target, err)


# -------------------------------------------------------------------------------------------------- downloads
def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"}:
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return False
    return bool(getattr(constants, "HF_HUB_OFFLINE", False))


def _download_url(url: str, target: Path, expected_sha256: str) -> None:
    """Stream ``url`` to ``target`` through a temporary file; keep it only if its SHA-256 matches."""
    import urllib.request

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + f".part-{os.getpid()}")
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as source, open(tmp, "wb") as out:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != expected_sha256:
            raise CLIPLoadError(f"downloaded {url} but its SHA-256 is {digest.hexdigest()}, not {expected_sha256}; "
                                f"nothing was written to {target}. Try again or fetch {target.name} by hand.")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- file readers
def _sniff(path: Path) -> str:
    """'zip' (torch.save / JIT archive), 'safetensors', or 'other' (legacy torch.save or garbage)."""
    size = path.stat().st_size
    if size == 0:
        raise CLIPLoadError(f"{path} is empty (0 bytes): truncated download? Replace it with the original file.")
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "zip"
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    return "other"


def _is_jit_archive(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as err:
        raise _corrupt(path, err) from err
    return any(n.endswith("/constants.pkl") or "/code/" in n for n in names)


def _read_jit(path: Path) -> dict[str, Any]:
    import torch

    try:
        with warnings.catch_warnings():  # jit.load is deprecated, but OpenAI's .pt files are JIT archives
            warnings.simplefilter("ignore", FutureWarning)
            archive = torch.jit.load(str(path), map_location="cpu")
    except (RuntimeError, ValueError) as err:
        raise _corrupt(path, err) from err
    return dict(archive.state_dict())


def _torch_load(path: Path) -> dict[str, Any]:
    from pickle import UnpicklingError  # only the error type that weights_only=True loads raise

    import torch

    if _sniff(path) == "zip":
        _is_jit_archive(path)  # validates the zip directory: truncated files fail here with a clear message
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except UnpicklingError as err:
        raise CLIPLoadError(
            f"{path} holds Python objects, not only tensors; it was refused because CLIP files are read with "
            f"torch.load(weights_only=True). Save a plain state dict (model.state_dict()) instead. ({_short(err)})"
        ) from err
    except Exception as err:  # torch.load raises many types on garbage (RuntimeError, EOFError, IndexError, ...)
        raise _corrupt(path, err) from err
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise CLIPLoadError(f"{path} holds a {type(obj).__name__}, not a state dict; expected a CLIP state dict "
                            "(OpenAI layout) or an OpenAI JIT archive.")
    return dict(obj)


def _read_safetensors(path: Path) -> tuple[dict[str, Any], dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise _corrupt(path, err) from err
    return tensors, metadata


def _from_state_dict(state: dict[str, Any], path: Path, heads: Optional[int] = None) -> Any:
    if is_hf_layout(state) and not is_openai_layout(state):
        config = path.parent / "config.json"
        if not config.is_file():
            raise CLIPFileNotFoundError(f"{path} holds Hugging Face CLIP tensors but {config} is missing: put the "
                                        "checkpoint's config.json beside it (or load the whole directory).")
        hf_heads = check_hf_config(_read_json(config), str(config))
        return build_model(convert_hf_state_dict(state, str(path)), transformer_heads=hf_heads, source=str(path))
    return build_model(state, transformer_heads=heads, source=str(path))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CLIPLoadError(f"{path} is not readable JSON ({_short(err)}).") from err
    if not isinstance(data, dict):
        raise CLIPLoadError(f"{path} must hold a JSON object, got {type(data).__name__}.")
    return data


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _corrupt(path: Path, err: BaseException) -> CLIPLoadError:
    return CLIPLoadError(f"{path} is truncated or corrupt and cannot be read ({_short(err)}). Replace it with a "
                         "complete copy (for OpenAI names, delete it and load again).")


def _short(err: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


# ------------------------------------------------------------------------------------------------- precision
def _apply_precision(model: Any, device: Any, precision: str) -> Any:
    import torch

    from ._openai import openai_clip
    from .precision import cpu_half_enabled

    dev = torch.device(device)
    model = model.float()
    if precision == "fp16" and dev.type == "cpu" and not cpu_half_enabled():
        logger.warning("CLIP: fp16 is not supported on CPU; using fp32 weights (pass precision='fp32' to silence).")
        precision = "fp32"
    if precision == "fp16":
        openai_clip().model.convert_weights(model)  # OpenAI's mix: linear/conv/attention/projections in fp16
    return model.to(dev).eval()
