"""Storage of each model at ViT-B/16 widths (text 512, vision 768, 12 layers) against the paper's column.

Arithmetic (parameters -> bytes; fp16 = 2 B a value; b-bit = ceil(b N / 8) B + 2^b fp16 centers per tensor):
  CoOp   n_ctx 4: 4 x 512 = 2,048 -> 4,096 B = "4.1 KB";  QCoOp b=1: 256 B + 2 x 2 B = 260 B = "0.26 KB";
         b=2: 512 + 8 = 520 B ("0.52 KB"); b=4: 1,024 + 32 = 1,056 B ("1.05 KB").
  CoCoOp: ctx 2,048 + meta-net 512x32+32 + 32x512+512 = 35,360 -> 70,720 B (paper "70.8 KB": all params with
          biases; without biases 69,632 B, farther from the paper).
  MaPLe n_ctx 2 depth 9: ctx 1,024 + proj 512x768+768 + 8 x (2x512) + 8 x (512x768+768) = 3,555,072 params
          -> 7,110,144 B ("~7.1 MB"). The paper's 7,096 KB is exactly the count without the 9 biases:
          3,548,160 params -> 7,096,320 B.
  QMaPLe b=4 (all 27 tensors quantized): 3,555,072 x 4 / 8 = 1,777,536 B (a quarter of MaPLe's fp16) + 27 x 16
          x 2 B codebooks = 1,778,400 B; counted like the paper (no biases): 1,774,080 + 18 x 32 = 1,774,656 B
          = "1,774 KB" + 0.6 KB of codebooks.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from quantprompt import prompting, quant
from quantprompt.clip._openai import openai_clip

NAMES = [f"class {i}" for i in range(5)]


@pytest.fixture(scope="module")
def vit_b16():
    """CLIP ViT-B/16's architecture with random weights; the towers live on the meta device (never run),
    only what prompt learners read at construction (token embedding, ln_final) is real."""
    clip = openai_clip()
    with torch.device("meta"):
        model = clip.model.CLIP(512, 224, 12, 768, 16, 77, 49408, 512, 8, 12)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model.token_embedding = torch.nn.Embedding(49408, 512)
    model.ln_final = clip.model.LayerNorm(512)
    return model


def build(name, clip_model, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return prompting.build(name, clip_model, NAMES, precision="fp32", **kw)


def test_coop_and_qcoop(vit_b16):
    coop = build("coop", vit_b16, ctx_init="a photo of a")
    assert prompting.fp16_bytes(coop) == 4096 and round(4096 / 1000, 1) == 4.1
    qcoop = build("qcoop", vit_b16, ctx_init="a photo of a", bits=1)
    report = quant.size_report(qcoop)
    assert report["payload_bytes"] == 260 == prompting.storage_bytes(qcoop)
    assert report["tensors"]["prompt_learner.ctx"]["index_bytes"] == 256
    assert report["header_bytes"] < 64 + 32  # one tensor header < 64 B, plus the fixed header
    for bits, expected, paper_kb in [(2, 520, 0.52), (4, 1056, 1.05)]:  # Table 6 (the paper truncates 1.056)
        q = build("qcoop", vit_b16, ctx_init="a photo of a", bits=bits)
        assert quant.size_report(q)["payload_bytes"] == expected
        assert abs(expected / 1000 - paper_kb) < 0.01


def test_cocoop(vit_b16):
    cocoop = build("cocoop", vit_b16, ctx_init="a photo of a")
    assert sum(p.numel() for p in cocoop.prompt_learner.parameters()) == 35_360
    assert prompting.fp16_bytes(cocoop) == 70_720
    assert abs(70_720 / 1000 - 70.8) < 0.1
    q = build("qcocoop", vit_b16, ctx_init="a photo of a", bits=1)
    report = quant.size_report(q)
    assert len(report["tensors"]) == 5 and report["unquantized_fp16_bytes"] == 0
    assert report["payload_bytes"] == (2048 + 16384 + 16384) // 8 + (32 + 512 + 7) // 8 + 5 * 4


def test_maple_and_qmaple(vit_b16):
    maple = build("maple", vit_b16, n_ctx=2, prompt_depth=9)
    n_params = sum(p.numel() for p in maple.prompt_learner.parameters())
    assert n_params == 1024 + (512 * 768 + 768) + 8 * 1024 + 8 * (512 * 768 + 768) == 3_555_072
    assert prompting.fp16_bytes(maple) == 7_110_144  # ~7.1 MB
    assert prompting.fp16_bytes(maple, include_bias=False) == 7_096_320  # the paper's 7,096 KB
    # sizes do not depend on the clustering: a cheap K-Means keeps this test fast
    qmaple = build("qmaple", vit_b16, n_ctx=2, prompt_depth=9, bits=4, kmeans_init="quantile", kmeans_restarts=1,
                   kmeans_max_iter=3)
    report = quant.size_report(qmaple)
    assert len(report["tensors"]) == 27 and report["unquantized_fp16_bytes"] == 0
    assert report["payload_bytes"] == 7_110_144 // 4 + 27 * 16 * 2 == 1_778_400
    assert prompting.storage_bytes(qmaple, include_bias=False) == 1_774_080 + 18 * 32
    assert int(prompting.storage_bytes(qmaple, include_bias=False) / 1000) == 1774
