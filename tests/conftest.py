"""Fixtures shared by several test modules."""

from __future__ import annotations

import pytest


@pytest.fixture
def one_thread():
    """One torch thread for the test: training runs on a shared 2-core CI box are faster and repeatable so."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped, with one line of reason, where torch sees no CUDA device."""
    cuda_items = [item for item in items if item.get_closest_marker("cuda") is not None]
    if not cuda_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False); "
                                   "run on a GPU machine: bash bench/gpu.sh")
    for item in cuda_items:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def ci_world_clip(tmp_path_factory: pytest.TempPathFactory):
    """The CI-budget world CLIP (120 pretraining steps: 3x chance on the 64 colour + shape classes, checked in
    tests/test_world.py), pretrained once per test session and shared by the demo and study tests.
    Returns (the cache folder, the pretraining settings, the cached CLIP)."""

    import torch

    from quantprompt import world

    settings = world.PretrainSettings(steps=120, pool_size=2048, batch_size=96, warmup_steps=12)  # 4 + 4 layers
    cache = tmp_path_factory.mktemp("world-cache")
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CI box: extra threads spin more than they help at this size
    try:
        cached = world.ensure_clip("quick", cache, settings=settings, progress=False, log=lambda _m: None)
    finally:
        torch.set_num_threads(old)
    return cache, settings, cached
