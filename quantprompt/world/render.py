"""Draw a :class:`Scene` as a 32x32 RGB image with numpy (no files, no fonts, nothing downloaded).

Shapes are implicit functions on a 2x supersampled grid (so edges are anti-aliased after the 2x2 average);
the per-image ``rng`` jitters hue, brightness, rotation, position and scale (a little), pattern phase and pixel
noise, so two images of one scene differ the way two photos of one object do. Styles change the rendering the
way a domain shift does: ``painting`` posterizes and adds brush texture, ``sketch`` keeps only a coloured
outline on paper. Same scene + same rng state -> same bytes.
"""

from __future__ import annotations

import colorsys

import numpy as np

from .attributes import COLOUR_RGB, Scene

__all__ = ["IMAGE_SIZE", "render"]

IMAGE_SIZE = 32
_SS = 2  # supersampling factor
_N = IMAGE_SIZE * _SS
_GRID = (np.mgrid[0:_N, 0:_N].astype(np.float64) + 0.5) / _N * 2.0 - 1.0  # (y, x) in [-1, 1]
_RADIUS = 0.62  # the object spans ~60% of the image
_BACKGROUND = {"white": 0.92, "black": 0.10, "grey": 0.50}


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Boolean inside-mask of ``shape`` in object coordinates (u right, v down; the shape spans about [-1, 1])."""
    r = np.hypot(u, v)
    if shape == "circle":
        return r <= 0.95
    if shape == "square":
        return np.maximum(np.abs(u), np.abs(v)) <= 0.8
    if shape == "triangle":  # pointing up
        return (v <= 0.7) & (v >= -0.95 + 1.9 * np.abs(u) / 1.1 * 0.95)
    if shape == "star":
        theta = np.arctan2(v, u) + np.pi / 2
        return r <= 0.5 + 0.45 * np.abs(np.cos(2.5 * theta)) ** 2
    if shape == "cross":
        return ((np.abs(u) <= 0.3) & (np.abs(v) <= 0.95)) | ((np.abs(v) <= 0.3) & (np.abs(u) <= 0.95))
    if shape == "ring":
        return (r <= 0.95) & (r >= 0.55)
    if shape == "diamond":
        return np.abs(u) / 0.75 + np.abs(v) <= 1.0
    if shape == "heart":
        x, y = u * 1.2, -v * 1.2 + 0.15
        return (x * x + y * y - 1.0) ** 3 - x * x * y ** 3 <= 0.0
    raise ValueError(f"unknown shape {shape!r}")


def _pattern(pattern: str, u: np.ndarray, v: np.ndarray, phase: float, angle: float) -> np.ndarray:
    """1 where the fill shows the object's colour, 0 where it shows the pattern's darker second colour."""
    if pattern == "plain":
        return np.ones_like(u)
    if pattern == "striped":
        return (np.sin(np.pi * 2.2 * (u * np.cos(angle) + v * np.sin(angle)) + phase) > 0).astype(np.float64)
    if pattern == "spotted":
        gu = np.mod(u * 2.0 + phase, 1.0) - 0.5
        gv = np.mod(v * 2.0 + phase * 0.7, 1.0) - 0.5
        return (np.hypot(gu, gv) > 0.25).astype(np.float64)
    if pattern == "checkered":
        return ((np.floor(u * 2.2 + phase) + np.floor(v * 2.2 + phase)) % 2 == 0).astype(np.float64)
    raise ValueError(f"unknown pattern {pattern!r}")


def _jitter_colour(rgb: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    h = (h + rng.normal(0, 0.015)) % 1.0
    s = float(np.clip(s * rng.uniform(0.85, 1.1), 0, 1))
    v = float(np.clip(v * rng.uniform(0.85, 1.1), 0, 1))
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """``scene`` as a (32, 32, 3) uint8 array; all randomness comes from ``rng``."""
    y, x = _GRID
    cy, cx = rng.uniform(-0.08, 0.08), rng.uniform(-0.08, 0.08)
    radius = _RADIUS * rng.uniform(0.9, 1.1)
    rot = rng.uniform(-0.35, 0.35)
    c, s = np.cos(rot), np.sin(rot)
    u = ((x - cx) * c + (y - cy) * s) / radius
    v = (-(x - cx) * s + (y - cy) * c) / radius
    inside = _shape_mask(scene.shape, u, v).astype(np.float64)

    colour = _jitter_colour(COLOUR_RGB[scene.colour], rng)
    second = colour * 0.35
    fill = _pattern(scene.pattern, u, v, rng.uniform(0, 2 * np.pi), rng.uniform(0, np.pi))[..., None]
    obj = fill * colour + (1 - fill) * second

    level = _BACKGROUND[scene.background] + rng.uniform(-0.05, 0.05)
    light = 1.0 + 0.12 * (x * rng.uniform(-1, 1) + y * rng.uniform(-1, 1))  # a soft lighting gradient
    bg = np.repeat((level * light)[..., None], 3, axis=2)

    if scene.style == "sketch":  # coloured outline on paper: fill and pattern are gone
        paper = 0.95 + rng.uniform(-0.03, 0.03)
        bg = np.full_like(bg, paper)
        eroded = np.zeros_like(inside)
        eroded[2:-2, 2:-2] = inside[:-4, 2:-2] * inside[4:, 2:-2] * inside[2:-2, :-4] * inside[2:-2, 4:]
        inside = inside - eroded
        obj = np.broadcast_to(colour * 0.9, obj.shape)
    img = inside[..., None] * obj + (1 - inside[..., None]) * bg
    if scene.style == "photo":
        img = img + rng.normal(0, 0.03, size=img.shape)
    elif scene.style == "painting":  # brush texture, posterized colours
        strokes = np.sin(x * rng.uniform(8, 14) + np.sin(y * 5 + rng.uniform(0, 6)) * 1.5)
        img = img * (1 + 0.12 * strokes[..., None]) + rng.normal(0, 0.02, size=img.shape)
        img = np.round(np.clip(img, 0, 1) * 4) / 4
    img = img.reshape(IMAGE_SIZE, _SS, IMAGE_SIZE, _SS, 3).mean(axis=(1, 3))
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
