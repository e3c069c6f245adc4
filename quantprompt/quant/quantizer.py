"""The K-Means quantizer as a ``torch.nn.utils.parametrize`` parametrization (forward: quantize; backward: STE).

Forward, per tensor (or per row): mu and population sigma of W, W_hat = (W - mu) / sigma, Q(W_hat) = nearest of
the 2^b centers, W_q = sigma * Q(W_hat) + mu.  The denormalized codebook sigma * c + mu is rounded to fp16, the
precision it is stored in, *before* it is used, so the values the model trains and evaluates with are exactly
the values ``export`` writes and ``load_into`` restores.  Backward: straight-through, dW_q/dW = identity.
sigma = 0 (a constant tensor/row) is replaced by 1, so W_hat = 0 and no NaN appears.
All state (centers, CAC histogram, counters, the on/off switch) lives in buffers, so ``state_dict`` carries it.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import Tensor, nn

from .cac import index_histogram, kl_divergence, should_recluster
from .config import QuantConfig
from .kmeans import kmeans_1d

__all__ = ["KMeansQuantizer"]


class _StraightThrough(torch.autograd.Function):
    """Returns the quantized tensor; the gradient passes through unchanged (STE)."""

    @staticmethod
    def forward(ctx: Any, w: Tensor, quantizer: KMeansQuantizer) -> Tensor:  # noqa: D102
        return quantizer.quantize(w)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # noqa: D102
        return grad, None


class KMeansQuantizer(nn.Module):
    """b-bit K-Means quantizer of one tensor, registered with ``torch.nn.utils.parametrize``."""

    centers: Tensor
    old_hist: Tensor
    ref_error: Tensor
    last_error: Tensor
    last_kl: Tensor
    steps_since: Tensor
    num_steps: Tensor
    reclusters: Tensor
    active: Tensor

    def __init__(self, shape: torch.Size, cfg: QuantConfig, device: Optional[torch.device] = None) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.bits = cfg.bits
        self.k = 2 ** cfg.bits
        self.norm = cfg.norm
        self.per_row = cfg.per_row
        self.mode = cfg.mode
        self.rows = self.shape[0] if (cfg.per_row and len(self.shape) >= 2) else 1
        self.cfg = cfg
        f32 = dict(dtype=torch.float32, device=device)
        i64 = dict(dtype=torch.int64, device=device)
        self.register_buffer("centers", torch.zeros(self.rows, self.k, **f32))
        self.register_buffer("old_hist", torch.zeros(self.rows, self.k, **f32))
        self.register_buffer("ref_error", torch.zeros((), **f32))
        self.register_buffer("last_error", torch.zeros((), **f32))
        self.register_buffer("last_kl", torch.zeros((), **f32))
        self.register_buffer("steps_since", torch.zeros((), **i64))
        self.register_buffer("num_steps", torch.zeros((), **i64))
        self.register_buffer("reclusters", torch.zeros((), **i64))
        self.register_buffer("active", torch.zeros((), dtype=torch.bool, device=device))

    def extra_repr(self) -> str:
        return (f"shape={self.shape}, bits={self.bits}, norm={self.norm}, per_row={self.per_row}, "
                f"mode={self.mode}")

    # ---- the numbers -------------------------------------------------------------------------------------
    def _rows(self, w: Tensor) -> Tensor:
        return w.detach().to(torch.float32).reshape(self.rows, -1)

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if not self.norm:
            one = torch.ones(self.rows, 1, dtype=x.dtype, device=x.device)
            return torch.zeros_like(one), one
        sd, mu = torch.std_mean(x, dim=1, correction=0, keepdim=True)
        return mu, torch.where(sd > 0, sd, torch.ones_like(sd))

    def normalize(self, w: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(W_hat (rows, m), mu (rows, 1), sigma (rows, 1)); sigma 0 is replaced by 1."""
        x = self._rows(w)
        mu, sd = self._stats(x)
        return (x - mu) / sd, mu, sd

    def assign(self, x: Tensor, centers: Optional[Tensor] = None) -> Tensor:
        """Nearest-center index (rows, m) of normalized values (ties go to the lower center)."""
        c = (self.centers if centers is None else centers).to(device=x.device, dtype=torch.float32)
        mids = ((c[:, 1:] + c[:, :-1]) / 2).contiguous()
        if self.k == 2:
            return (x > mids).long()
        return torch.searchsorted(mids, x.contiguous())

    @staticmethod
    def _row_errors(x: Tensor, c: Tensor, idx: Tensor) -> Tensor:
        return ((x - c.gather(1, idx)) ** 2).mean(1)

    def table(self, mu: Tensor, sd: Tensor) -> Tensor:
        """The denormalized codebook (rows, 2^b) in fp16: what the forward uses and what ``export`` stores."""
        return (self.centers.to(torch.float32) * sd + mu).to(torch.float16)

    def encode(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """(indices (rows, m) int64, fp16 codebook (rows, 2^b)) of tensor ``w`` under the current centers.

        The nearest center is found by comparing W itself with the denormalized midpoints (sigma > 0 keeps their
        order), which saves materializing W_hat in every forward.
        """
        x = self._rows(w)
        mu, sd = self._stats(x)
        c = self.centers.to(torch.float32)
        mids = (((c[:, 1:] + c[:, :-1]) / 2) * sd + mu).contiguous()
        idx = (x > mids).long() if self.k == 2 else torch.searchsorted(mids, x.contiguous())
        return idx, self.table(mu, sd)

    def quantize(self, w: Tensor) -> Tensor:
        """W_q with the current codebook, same dtype and shape as ``w`` (no autograd); same values as encode."""
        x = self._rows(w)
        mu, sd = self._stats(x)
        c = self.centers.to(torch.float32)
        mids = (((c[:, 1:] + c[:, :-1]) / 2) * sd + mu).contiguous()
        table = self.table(mu, sd).to(w.dtype)
        if self.k == 2:  # the common 1-bit case: one select, no index tensor
            out = torch.where(x > mids, table[:, 1:], table[:, :1])
        else:
            out = table.gather(1, torch.searchsorted(mids, x.contiguous()))
        return out.reshape(w.shape)

    def forward(self, w: Tensor) -> Tensor:
        if not bool(self.active):
            return w
        return _StraightThrough.apply(w, self)

    # ---- clustering -------------------------------------------------------------------------------------
    def _kmeans(self, x: Tensor, warm: Optional[Tensor], salt: int) -> Tensor:
        cfg = self.cfg
        out = []
        for r in range(self.rows):
            c, _ = kmeans_1d(
                x[r], self.k, seed=cfg.seed + salt * 100_003 + r, backend=cfg.kmeans_backend,
                init=cfg.kmeans_init, restarts=cfg.kmeans_restarts, max_iter=cfg.kmeans_max_iter,
                init_centers=None if (warm is None or cfg.kmeans_backend == "sklearn") else warm[r],
            )
            out.append(c.to(x.device))
        return torch.stack(out)

    @torch.no_grad()
    def cluster_(self, w: Tensor) -> None:
        """Fit the codebook to ``w`` from scratch (at ``quantize_`` for QAT, at ``finalize_`` for PTQ)."""
        x, _, _ = self.normalize(w)
        c = self._kmeans(x, None, 0)
        self._set_codebook(x, c)
        self.active.fill_(True)

    def _set_codebook(self, x: Tensor, c: Tensor) -> Tensor:
        self.centers.copy_(c)
        idx = self.assign(x)
        self.old_hist.copy_(index_histogram(idx, self.k))
        err = self._row_errors(x, c.to(x.dtype), idx).mean()
        self.ref_error.copy_(err)
        self.last_error.copy_(err)
        self.steps_since.zero_()
        return err

    @torch.no_grad()
    def step(self, w: Tensor) -> dict[str, Any]:
        """One CAC check (call once per optimizer step); re-clusters when the enabled conditions hold."""
        cfg = self.cfg
        info: dict[str, Any] = {"reclustered": False, "checked": False}
        if bool(self.active) and self.mode == "qat" and cfg.recluster != "never":
            self.num_steps += 1
            self.steps_since += 1
            gate_open = cfg.recluster == "always" or cfg.interval == 0 or int(self.steps_since) >= cfg.interval
            if gate_open:
                x, _, _ = self.normalize(w)
                c = self.centers.to(torch.float32)
                idx = self.assign(x, c)
                row_err = self._row_errors(x, c, idx)
                err = float(row_err.mean())
                kl = float(kl_divergence(index_histogram(idx, self.k), self.old_hist, cfg.kl_smoothing).mean())
                self.last_kl.fill_(kl)
                self.last_error.fill_(err)
                info.update(checked=True, error_before=err)
                fire = should_recluster(
                    recluster=cfg.recluster, steps_since=int(self.steps_since), interval=cfg.interval, kl=kl,
                    kl_threshold=cfg.kl_threshold, error=err, ref_error=float(self.ref_error),
                    require_error_increase=cfg.require_error_increase,
                )
                if fire:
                    new_c = self._kmeans(x, c, int(self.reclusters) + 1)
                    new_err = self._row_errors(x, new_c, self.assign(x, new_c))
                    # guard: a row keeps its old centers unless the new ones are at least as good
                    keep_new = (new_err <= row_err).unsqueeze(1)
                    chosen = torch.where(keep_new, new_c, c)
                    self._set_codebook(x, chosen)
                    self.reclusters += 1
                    info["reclustered"] = True
        info.update(self.stats())
        return info

    def stats(self) -> dict[str, Any]:
        """What trainers log: re-cluster count, last KL, quantization error (normalized MSE), centers."""
        return {
            "reclusters": int(self.reclusters),
            "kl": float(self.last_kl),
            "error": float(self.last_error),
            "ref_error": float(self.ref_error),
            "steps_since": int(self.steps_since),
            "steps": int(self.num_steps),
            "active": bool(self.active),
            "bits": self.bits,
            "centers": self.centers.detach().to(torch.float32).cpu().clone(),
        }
