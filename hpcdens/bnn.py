"""The Bayesian neural network: mean-field Gaussian variational layers, the ELBO and training
epochs, and the N_s weight samples of a prediction.

Method (Pathrudkar et al., npj Comput. Mater. 2025, Methods, Eq. 4-8): every weight and bias w has
a variational posterior q(w) = N(mu, sigma^2), sigma = softplus(rho), and the prior
P(w) = N(0, prior_sigma^2). The network maps a raw descriptor x (R^{5M}) to two numbers, the mean
f(x) and s(x) = log sigma^2(x) of a Gaussian likelihood (heteroscedastic aleatoric noise, Eq. 8).

Units and normalisation: the descriptor mean/std per feature and the target mean/std are buffers of
the model (``fit_normalisation``). Inside, the network works in normalised units;
:func:`hpcdens.bnn_predict.predict` returns physical units (the target's: e/Bohr^3 for rho or
delta-rho, variances in (e/Bohr^3)^2).

Reproducibility: ``draw_weight_samples(n, seed)`` draws the N_s weight samples once, from its own
``torch.Generator``; :mod:`hpcdens.bnn_predict` evaluates them the same way on every rank.

No file I/O (model files: :mod:`hpcdens.io.model`), no MPI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import InputError

ACTIVATIONS = {"silu": F.silu, "tanh": torch.tanh}
#: Upper bound of the network's s = log sigma^2 (normalised units) in prediction and evaluation
#: mode: the aleatoric std is at most 10 target stds. Unbounded, a weight sample far from the
#: training descriptors gave s ~ 460 (std 1e100 e/Bohr^3) at 0.25 % of a CrFeCoNi cell's points;
#: inside the training data s < 0.
LOG_VAR_MAX = math.log(100.0)
DEFAULT_POSTERIOR_SIGMA0 = 5e-3


def _softplus_inverse(sigma: float) -> float:
    return sigma + math.log(-math.expm1(-sigma))


def gaussian_kl(mu: torch.Tensor, sigma: torch.Tensor, prior_sigma: float) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, prior_sigma^2)), summed over all elements (closed form).

    KL = sum[ log(prior_sigma / sigma) + (sigma^2 + mu^2) / (2 prior_sigma^2) - 1/2 ].
    """
    ratio = (sigma * sigma + mu * mu) / (2.0 * prior_sigma**2)
    return (math.log(prior_sigma) - torch.log(sigma) + ratio - 0.5).sum()


class BayesianLinear(nn.Module):
    """Affine layer with a mean-field Gaussian posterior over its weights and biases.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths.
    prior_sigma : float
        Standard deviation of the N(0, prior_sigma^2) prior of every weight and bias.
    posterior_sigma0 : float
        Initial posterior standard deviation softplus(rho0) of every weight and bias.
    generator : torch.Generator, optional
        Random stream for the initial means (the global one if None).

    Initial means: weights uniform in +-sqrt(3 / n_in) (variance 1/n_in, LeCun, keeps unit-variance
    inputs at unit variance through tanh/SiLU), biases 0.
    """

    def __init__(self, n_in: int, n_out: int, prior_sigma: float = 1.0,
                 posterior_sigma0: float = DEFAULT_POSTERIOR_SIGMA0, generator=None):
        super().__init__()
        if not prior_sigma > 0 or not posterior_sigma0 > 0:
            raise InputError(f"prior_sigma ({prior_sigma}) and posterior_sigma0 "
                             f"({posterior_sigma0}) must be > 0")
        self.n_in, self.n_out, self.prior_sigma = int(n_in), int(n_out), float(prior_sigma)
        bound = math.sqrt(3.0 / n_in)
        rho0 = _softplus_inverse(posterior_sigma0)
        uniform = torch.rand(n_out, n_in, generator=generator) * 2 - 1
        self.weight_mu = nn.Parameter(uniform * bound)
        self.weight_rho = nn.Parameter(torch.full((n_out, n_in), rho0))
        self.bias_mu = nn.Parameter(torch.zeros(n_out))
        self.bias_rho = nn.Parameter(torch.full((n_out,), rho0))

    @property
    def weight_sigma(self) -> torch.Tensor:
        return F.softplus(self.weight_rho)

    @property
    def bias_sigma(self) -> torch.Tensor:
        return F.softplus(self.bias_rho)

    def forward(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        """Training mode: a posterior sample by the local reparameterisation trick (Kingma et al.
        2015): the pre-activation of each row is drawn from its exact Gaussian marginal,
        z = x mu_w^T + mu_b + sqrt(x^2 sigma_w^2T + sigma_b^2) * eps, i.e. an independent weight
        sample per row (same ELBO expectation as one shared sample, lower gradient variance).
        Evaluation mode: the posterior means."""
        mean = F.linear(x, self.weight_mu, self.bias_mu)
        if not self.training:
            return mean
        var = F.linear(x * x, self.weight_sigma ** 2, self.bias_sigma ** 2)
        eps = torch.randn(mean.shape, dtype=mean.dtype, device=mean.device, generator=generator)
        return mean + torch.sqrt(var) * eps

    def kl(self) -> torch.Tensor:
        """Closed-form KL(q || p) of this layer's weights and biases (a scalar)."""
        return (gaussian_kl(self.weight_mu, self.weight_sigma, self.prior_sigma)
                + gaussian_kl(self.bias_mu, self.bias_sigma, self.prior_sigma))


@dataclass(frozen=True)
class WeightSamples:
    """N_s weight samples of a network, float64, drawn once and reused for every prediction.

    weights : per layer, (n_samples, n_out, n_in) float64
    biases : per layer, (n_samples, n_out) float64
    seed : the seed they were drawn with (None for the posterior mean)
    """

    weights: tuple[torch.Tensor, ...]
    biases: tuple[torch.Tensor, ...]
    seed: int | None

    @property
    def n_samples(self) -> int:
        return int(self.weights[0].shape[0])


class BayesianNet(nn.Module):
    """Descriptor -> (f, log sigma^2), both in normalised target units.

    Parameters
    ----------
    n_in : int
        Descriptor length (5M).
    hidden_layers : sequence of int
        Widths of the hidden layers (``[model] hidden_layers``).
    activation : "silu" (default) or "tanh"
        Hidden-layer activation; smooth, so the predicted field is smooth in the descriptor.
    prior_sigma : float
        Prior standard deviation of every weight (``[model] prior_sigma``).
    posterior_sigma0 : float
        Initial posterior standard deviation of every weight.
    generator : torch.Generator, optional
        Random stream of the initial means.

    Buffers (saved with the model): ``x_mean``, ``x_std`` (n_in,), ``y_mean``, ``y_std`` (scalars,
    target units). Defaults 0 and 1 until ``fit_normalisation``.
    """

    def __init__(self, n_in: int, hidden_layers=(128, 128, 64), activation: str = "silu",
                 prior_sigma: float = 1.0, posterior_sigma0: float = DEFAULT_POSTERIOR_SIGMA0,
                 generator=None):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise InputError(f"activation {activation!r} unknown; "
                             f"use one of {', '.join(ACTIVATIONS)}")
        widths = [int(n_in), *(int(w) for w in hidden_layers), 2]
        if min(widths) < 1 or len(widths) < 3:
            raise InputError(f"n_in and hidden widths must be >= 1 and at least one hidden layer, "
                             f"got n_in={n_in}, hidden_layers={list(hidden_layers)}")
        self.n_in, self.hidden_layers, self.activation = widths[0], tuple(widths[1:-1]), activation
        self.prior_sigma, self.posterior_sigma0 = float(prior_sigma), float(posterior_sigma0)
        self.layers = nn.ModuleList(
            BayesianLinear(a, b, prior_sigma, posterior_sigma0, generator)
            for a, b in zip(widths[:-1], widths[1:]))
        self.register_buffer("x_mean", torch.zeros(self.n_in))
        self.register_buffer("x_std", torch.ones(self.n_in))
        self.register_buffer("y_mean", torch.zeros(()))
        self.register_buffer("y_std", torch.ones(()))

    def architecture(self) -> dict:
        """Everything needed to rebuild the network (stored in model files)."""
        return {"n_in": self.n_in, "hidden_layers": list(self.hidden_layers),
                "activation": self.activation, "prior_sigma": self.prior_sigma,
                "posterior_sigma0": self.posterior_sigma0}

    @torch.no_grad()
    def fit_normalisation(self, x, y) -> None:
        """Set the normalisation buffers from training data (raw descriptors, physical targets).

        x : (n, n_in) array; y : (n,) array, target units. Means and (population) standard
        deviations are computed in float64. A feature whose std is 0, or below 1e-10 |mean|
        (constant Z columns of a pure element), gets std 1 so that it normalises to 0, not NaN.
        """
        x = as_float64(x, "x", self.n_in)
        y = as_float64(y, "y").reshape(-1)
        if x.shape[0] != y.shape[0] or x.shape[0] < 1:
            raise InputError(f"fit_normalisation needs matching, non-empty x and y, "
                             f"got {x.shape[0]} and {y.shape[0]} rows")
        x_mean, y_mean = x.mean(0), y.mean()
        self.x_mean.copy_(x_mean)
        self.x_std.copy_(_guarded_std(x.std(0, correction=0), x_mean))
        self.y_mean.copy_(y_mean)
        self.y_std.copy_(_guarded_std(y.std(correction=0), y_mean))

    def normalise_x(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.x_mean) / self.x_std

    def normalise_y(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.y_mean) / self.y_std

    def forward(self, x: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw descriptors (n, n_in) -> (f, s), each (n,), normalised units, s = log sigma^2
        (in evaluation mode at most :data:`LOG_VAR_MAX`; training sees it unbounded).

        Training mode samples one set of weights per call (from ``generator``), evaluation mode
        uses the posterior means. For the predictive distribution use ``bnn_predict.predict``."""
        act = ACTIVATIONS[self.activation]
        h = self.normalise_x(x)
        for layer in self.layers[:-1]:
            h = act(layer(h, generator))
        out = self.layers[-1](h, generator)
        return out[:, 0], out[:, 1] if self.training else torch.clamp(out[:, 1], max=LOG_VAR_MAX)

    def kl(self) -> torch.Tensor:
        """KL(q || p) of all weights and biases, closed form (the first term of Eq. 4)."""
        return sum(layer.kl() for layer in self.layers)

    @torch.no_grad()
    def draw_weight_samples(self, n_samples: int, seed: int) -> WeightSamples:
        """N_s weight samples w = mu + sigma * eps from q, eps from ``torch.Generator`` seeded with
        ``seed``, in float64. Drawn sample by sample, layer by layer (weights, then biases), so the
        first k of n samples equal ``draw_weight_samples(k, seed)``."""
        if int(n_samples) < 1:
            raise InputError(f"n_samples must be >= 1, got {n_samples}")
        gen = torch.Generator().manual_seed(int(seed))
        n = int(n_samples)
        params = [(p_mu.detach().cpu().double(), p_sigma.detach().cpu().double())
                  for layer in self.layers
                  for p_mu, p_sigma in ((layer.weight_mu, layer.weight_sigma),
                                        (layer.bias_mu, layer.bias_sigma))]
        eps = [torch.empty((n, *mu.shape), dtype=torch.float64) for mu, _ in params]
        for j in range(n):                     # the generator's order: sample, layer, w then b
            for e, (mu, _) in zip(eps, params):
                torch.randn(mu.shape, generator=gen, dtype=torch.float64, out=e[j])
        drawn = [e.mul_(sigma).add_(mu) for e, (mu, sigma) in zip(eps, params)]
        return WeightSamples(tuple(drawn[0::2]), tuple(drawn[1::2]), int(seed))

    @torch.no_grad()
    def mean_weights(self) -> WeightSamples:
        """The posterior means as a single 'sample' (deterministic prediction, zero epistemic)."""
        weights = tuple(layer.weight_mu.detach().cpu().double()[None] for layer in self.layers)
        biases = tuple(layer.bias_mu.detach().cpu().double()[None] for layer in self.layers)
        return WeightSamples(weights, biases, None)


def build_model(n_in: int, model_config, activation: str = "silu", generator=None) -> BayesianNet:
    """A BayesianNet from a :class:`hpcdens.config.ModelConfig` (hidden_layers, prior_sigma)."""
    return BayesianNet(n_in, model_config.hidden_layers, activation, model_config.prior_sigma,
                       generator=generator)


def as_float64(a, name: str, n_cols: int | None = None) -> torch.Tensor:
    """``a`` (array or tensor) as a float64 CPU tensor; InputError naming ``name`` unless its shape
    is (n, n_cols) when ``n_cols`` is given."""
    t = torch.as_tensor(np.asarray(a) if not isinstance(a, torch.Tensor) else a)
    t = t.detach().cpu().to(torch.float64)
    if n_cols is not None and (t.ndim != 2 or t.shape[1] != n_cols):
        raise InputError(f"{name} must have shape (n, {n_cols}), got {tuple(t.shape)}")
    return t


def _guarded_std(std: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    constant = (std == 0) | (std <= 1e-10 * mean.abs())
    return torch.where(constant, torch.ones_like(std), std)


# --------------------------------------------------------------------------------------- loss ---

class ElboTerms(NamedTuple):
    """loss = kl / n_train + nll (a tensor to backpropagate); kl and nll as floats for logging."""

    loss: torch.Tensor
    kl: float
    nll: float


def gaussian_nll(f: torch.Tensor, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-point negative of Eq. 8: 0.5 s + 0.5 exp(-s) (f - y)^2 with s = log sigma^2
    (without the constant 0.5 log 2 pi, as in Eq. 8)."""
    return 0.5 * s + 0.5 * torch.exp(-s) * (f - y) ** 2


def elbo_loss(model, x: torch.Tensor, y: torch.Tensor, n_train: int, generator=None,
              nll_beta: float = 0.0) -> ElboTerms:
    """Minibatch estimate of F_KL / N_train (Eq. 4 divided by the training-set size).

    x : (b, n_in) raw descriptors; y : (b,) targets in physical units; n_train : N_train, the size
    of the whole training set (over all ranks when training is distributed). One weight sample per
    call. loss = KL(q||p) / N_train + mean_i [0.5 s_i + 0.5 exp(-s_i) (f_i - y_i)^2] in normalised
    units: for a uniformly drawn minibatch its expectation is exactly F_KL / N_train. Normalised
    and physical units differ by the constant log(y_std) per point: same gradients, same posterior.
    ``model`` may be wrapped (DistributedDataParallel): its ``.module`` supplies kl and buffers.

    ``nll_beta`` > 0 (``[train] nll_beta``, beta-NLL): the per-point terms are weighted by
    sigma_i^(2 beta) = exp(beta s_i), detached (no gradient through the weight), divided by their
    minibatch mean, so the data term keeps its scale against KL / N_train; the reported ``nll``
    stays the unweighted mean.
    """
    core = getattr(model, "module", model)
    f, s = model(x, generator)
    per_point = gaussian_nll(f, s, core.normalise_y(y.to(f.dtype)))
    nll = per_point.mean()
    data = nll
    if nll_beta:
        w = torch.exp(nll_beta * (s.detach() - s.detach().max()))   # shifted: no overflow
        data = (per_point * w).sum() / w.sum()
    kl = core.kl()
    loss = kl / float(n_train) + data
    return ElboTerms(loss, float(kl.detach()), float(nll.detach()))


def minibatches(x: torch.Tensor, y: torch.Tensor, batch_size: int, generator=None):
    """Shuffled (x, y) minibatches of at most ``batch_size`` rows (one epoch)."""
    order = torch.randperm(x.shape[0], generator=generator)
    for start in range(0, x.shape[0], batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def _clip_gradient(params, max_norm: float) -> float:
    """Scale the gradients of ``params`` to the global L2 norm ``max_norm`` if theirs is longer
    (a norm that overflows clips to zero: that batch is skipped); returns the norm before."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = float(torch.nn.utils.get_total_norm(grads))
    if norm > max_norm:
        for g in grads:
            g.mul_(max_norm / norm)
    return norm


def train_epoch(model, optimizer, batches: Iterable, n_train: int, generator=None,
                max_grad_norm: float = math.inf, nll_beta: float = 0.0) -> dict:
    """One pass over ``batches`` (pairs (x, y), e.g. ``minibatches(...)`` or a DataLoader).

    ``nll_beta``: see :func:`elbo_loss`. Each minibatch's gradient is scaled down to the global
    L2 norm ``max_grad_norm`` when it is longer (a shorter one is left bit for bit as it is).
    Why: in training mode every point sees its own weight sample, and a rare sample can put f
    many sigma off with s = log sigma^2 far below the posterior mean's (measured on a delta-rho
    model: s = -19.5 where the mean network gives -4), so that one point's 0.5 exp(-s)(f - y)^2
    (1e11 nats) makes the batch gradient 300x its median and Adam carries the jump on for many
    steps. Returns the batch-averaged {"loss", "kl", "nll"}, the median gradient norm before
    clipping ("grad_norm") and the number of batches clipped ("clipped"), as floats."""
    model.train()
    totals, count, norms = np.zeros(3), 0, []
    params = [p for p in model.parameters() if p.requires_grad]
    for x, y in batches:
        optimizer.zero_grad(set_to_none=True)
        terms = elbo_loss(model, x, y, n_train, generator, nll_beta)
        terms.loss.backward()
        norms.append(_clip_gradient(params, max_grad_norm))
        optimizer.step()
        totals += (float(terms.loss.detach()), terms.kl, terms.nll)
        count += 1
    totals /= max(count, 1)
    return {"loss": float(totals[0]), "kl": float(totals[1]), "nll": float(totals[2]),
            "grad_norm": float(np.median(norms)) if norms else 0.0,
            "clipped": float(sum(n > max_grad_norm for n in norms))}
