"""The QPrompt method: K-Means prompt quantization (STE), constrained adaptive clustering, noise, packed export.

Works on any ``nn.Module`` through ``torch.nn.utils.parametrize``; imports nothing from CLIP, Dassl, yacs or the
prompting code (scikit-learn only lazily, for the reference K-Means backend).
"""

from __future__ import annotations

from .api import add_noise_, finalize_, noise_modules, quantize_, quantizers, remove_, stats, step
from .codec import FormatError, export, load_into, read_metadata, size_report
from .config import NoiseConfig, QuantConfig
from .kmeans import assign_1d, inertia_1d, kmeans_1d
from .noise import GaussianNoise
from .quantizer import KMeansQuantizer

__all__ = [
    "QuantConfig", "NoiseConfig", "quantize_", "remove_", "step", "finalize_", "stats", "quantizers",
    "add_noise_", "noise_modules", "export", "load_into", "read_metadata", "size_report", "FormatError",
    "kmeans_1d", "inertia_1d", "assign_1d", "KMeansQuantizer", "GaussianNoise",
]
