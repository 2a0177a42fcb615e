"""Monte-Carlo prediction of a :class:`hpcdens.bnn.BayesianNet` with fixed weight samples (Eq. 7).

``predict`` evaluates the N_s weight samples (``BayesianNet.draw_weight_samples``) in float64 or
float32, in zero-padded blocks of a fixed shape whose rows are 64-byte aligned, so each point's
result depends only on that point's descriptor: the same on every rank, however the points are
split into chunks (see docs/model.md). Results are in physical units (the target's: e/Bohr^3 for
rho or delta-rho, variances in (e/Bohr^3)^2). No file I/O, no MPI.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from .bnn import LOG_VAR_MAX, BayesianNet, WeightSamples, as_float64
from .errors import InputError, ModelError

ACTIVATIONS_INPLACE = {"silu": lambda t: F.silu(t, inplace=True), "tanh": torch.tanh_}
PREDICT_DTYPES = {"float64": torch.float64, "float32": torch.float32}
DEFAULT_BLOCK_ROWS = 256  # rows per prediction block: the N_s x rows x 128 activations stay cached
_ROW_ALIGN = 16  # rows per prediction block: a multiple of 16 (64 bytes of float32)
_GRAIN = 32768  # torch's intra-op grain size (at::internal::GRAIN_SIZE), elements


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _lanes(dtype: torch.dtype) -> int:
    """Elements of ``dtype`` per 64 bytes (8 float64, 16 float32)."""
    return 64 // torch.empty((), dtype=dtype).element_size()


def _check_dtype(dtype) -> torch.dtype:
    """torch.float64/torch.float32, or their names "float64"/"float32" -> the torch dtype."""
    named = PREDICT_DTYPES.get(dtype) if isinstance(dtype, str) else None
    if named is not None:
        return named
    if dtype not in PREDICT_DTYPES.values():
        raise InputError(f"prediction dtype must be float64 or float32 (torch dtype or name), "
                         f"got {dtype!r}")
    return dtype


class _PaddedNet(NamedTuple):
    """The N_s weight samples laid out for :func:`_forward_block`, in the prediction dtype, every
    width zero-padded to a multiple of 64 bytes (the output layer keeps its width 2).

    first : (n_in_p, N_s * h1_p), the first layer of all samples side by side (one GEMM)
    first_bias : (N_s * h1_p,)
    rest : per later layer (W^T (N_s, n_in_p, n_out_p), b (N_s, 1, n_out_p)), batched GEMMs
    """

    first: torch.Tensor
    first_bias: torch.Tensor
    rest: tuple


def _padded_layers(samples: WeightSamples, model: BayesianNet,
                   dtype: torch.dtype = torch.float64) -> _PaddedNet:
    """The samples as a :class:`_PaddedNet` of ``dtype`` (float64 samples rounded once)."""
    expected = [(layer.n_out, layer.n_in) for layer in model.layers]
    got = [tuple(w.shape[1:]) for w in samples.weights]
    if got != expected:
        raise ModelError(f"weight samples of shapes {got} do not fit this model ({expected}); "
                         f"draw them from the model with model.draw_weight_samples")
    lanes = _lanes(dtype)
    padded = []
    for i, (w, b) in enumerate(zip(samples.weights, samples.biases)):
        n, n_out, n_in = w.shape
        out_p = n_out if i == len(expected) - 1 else _round_up(n_out, lanes)
        wt = torch.zeros(n, _round_up(n_in, lanes), out_p, dtype=dtype)
        bp = torch.zeros(n, 1, out_p, dtype=dtype)
        wt[:, :n_in, :n_out], bp[:, 0, :n_out] = w.transpose(1, 2), b
        padded.append((wt, bp))
    w1, b1 = padded[0]
    first = w1.permute(1, 0, 2).reshape(w1.shape[1], -1).contiguous()
    return _PaddedNet(first, b1.reshape(-1).contiguous(), tuple(padded[1:]))


def _pointwise_(op, t: torch.Tensor) -> None:
    """Apply the in-place elementwise ``op`` to the contiguous ``t`` in pieces of ``_GRAIN``
    elements. Each piece stays below torch's intra-op grain size (so it runs on one thread) and
    starts at a multiple of 64 bytes, and every length here is a multiple of two vectors, so every
    element goes through the vectorised kernel: torch computes a loop's leftover tail (and the tail
    of each thread's share) with a scalar kernel whose SiLU differs in the last bit."""
    flat = t.view(-1)
    for start in range(0, flat.numel(), _GRAIN):
        op(flat[start:start + _GRAIN])


def _forward_block(block: torch.Tensor, net: _PaddedNet, act_):
    """All N_s samples on one block (rows, n_in_p) -> (N_s, rows, 2): (f, s) per sample.

    First layer: one GEMM (rows, n_in_p) x (n_in_p, N_s h1_p), since every sample sees the same
    input; later layers: one batched GEMM over the samples each."""
    rows, n_s = block.shape[0], net.rest[0][0].shape[0]
    h = torch.addmm(net.first_bias, block, net.first)
    _pointwise_(act_, h)
    h = h.view(rows, n_s, -1).transpose(0, 1)
    for wt, b in net.rest[:-1]:
        h = torch.baddbmm(b, h, wt)
        _pointwise_(act_, h)
    wt, b = net.rest[-1]
    return torch.baddbmm(b, h, wt)


@torch.no_grad()
def predict(model: BayesianNet, x, samples: WeightSamples, batch_size: int = DEFAULT_BLOCK_ROWS,
            dtype: torch.dtype | str = torch.float64, keep_samples: bool = False) -> dict:
    """Predictive mean and variances (Eq. 7) from fixed weight samples, in physical units.

    Parameters
    ----------
    model : BayesianNet
        Supplies the normalisation buffers and the activation (its own weights are not used).
    x : (n, n_in) array or tensor, raw descriptors; n may be 0.
    samples : WeightSamples from ``model.draw_weight_samples`` (or ``model.mean_weights()``).
    batch_size : rows per block (default 256), rounded up to a multiple of 16. Each block is a
        fresh, zero-padded buffer; all N_s samples are evaluated on it at once (first layer: one
        GEMM with the N_s weight matrices side by side; later layers: batched GEMMs over the
        samples). The result for a point depends only on its descriptor, not on the batch size,
        how ``x`` was split or the thread count (tested bit for bit, both dtypes).
    dtype : torch.float64 (default) or torch.float32, or their names "float64"/"float32": the
        precision of the network pass. Descriptors are normalised in float64, then rounded to
        ``dtype``, and so are the weight samples; the per-sample outputs f_j and s_j are converted
        to float64 and the moments accumulated in float64 in both cases, so float32 differs from
        float64 only by the network's rounding (~1e-6 of y_std; docs/model.md). float32 is about
        twice as fast.
    keep_samples : also return each weight sample's mean f_j (``samples``).

    Returns
    -------
    dict of (n,) float64 numpy arrays:
        mean : 1/N_s sum_j f_j(x), target units (e/Bohr^3)
        epistemic_var : 1/N_s sum_j (f_j - mean)^2, the second term of Eq. 7, (e/Bohr^3)^2
        aleatoric_var : 1/N_s sum_j sigma_j^2(x), the first term of Eq. 7, (e/Bohr^3)^2, each
            sigma_j^2 at most exp(LOG_VAR_MAX) y_std^2
        total_var : epistemic_var + aleatoric_var
    and with ``keep_samples`` ``samples`` : (N_s, n) float64, f_j(x) of each weight sample in target
        units: one sample of the posterior's density field per row, since the weights of sample j
        are the same at every point (their mean over j is ``mean`` up to rounding).
    """
    dtype = _check_dtype(dtype)
    x = as_float64(x, "x", model.n_in)
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).any(1).sum())
        raise InputError(f"{bad} descriptor rows contain NaN or inf")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    rows, n = _round_up(int(batch_size), _ROW_ALIGN), x.shape[0]
    net = _padded_layers(samples, model, dtype)
    act_ = ACTIVATIONS_INPLACE[model.activation]
    x_mean, x_std = model.x_mean.detach().cpu().double(), model.x_std.detach().cpu().double()
    y_mean, y_std = float(model.y_mean), float(model.y_std)
    n_s, n_in_p = samples.n_samples, net.first.shape[0]
    out = {key: np.empty(n) for key in ("mean", "epistemic_var", "aleatoric_var", "total_var")}
    if keep_samples:
        out["samples"] = np.empty((n_s, n))
    for start in range(0, n, rows):
        m = min(rows, n - start)
        block = torch.zeros(rows, n_in_p, dtype=dtype)
        block[:m, :model.n_in] = (x[start:start + m] - x_mean) / x_std
        fs = _forward_block(block, net, act_)
        f_blk = torch.empty(n_s, rows, dtype=torch.float64)
        s_blk = torch.empty(n_s, rows, dtype=torch.float64)
        f_blk.copy_(fs[:, :, 0])
        s_blk.copy_(fs[:, :, 1])
        s_blk.clamp_(max=LOG_VAR_MAX)
        _pointwise_(torch.exp_, s_blk)
        for key, value in _moments(f_blk, s_blk, y_mean, y_std).items():
            out[key][start:start + m] = value[:m].numpy()
        if keep_samples:
            out["samples"][:, start:start + m] = (f_blk[:, :m] * y_std + y_mean).numpy()
    return out


def _moments(f_blk: torch.Tensor, var_blk: torch.Tensor, y_mean: float, y_std: float) -> dict:
    """Eq. 7 moments of one block in physical units from the per-sample f_j (N_s, rows) and
    exp(s_j) (N_s, rows), float64, by explicit loops over the samples of elementwise IEEE
    operations (fixed order, so independent of a row's position)."""
    n_s = f_blk.shape[0]
    total = torch.zeros(f_blk.shape[1], dtype=torch.float64)
    ale_sum = torch.zeros_like(total)
    for j in range(n_s):
        total += f_blk[j]
        ale_sum += var_blk[j]
    mean_n = total / n_s
    spread = torch.zeros_like(mean_n)
    for j in range(n_s):
        spread += (f_blk[j] - mean_n) ** 2
    epistemic = spread / n_s * y_std**2
    aleatoric = ale_sum / n_s * y_std**2
    return {"mean": mean_n * y_std + y_mean, "epistemic_var": epistemic,
            "aleatoric_var": aleatoric, "total_var": epistemic + aleatoric}
