"""An ensemble of independently trained Bayesian networks as one set of weight samples.

A mean-field variational posterior sits in one basin of the loss: trainings that differ only in
their seed (points, validation split, initial weights, batches) land in different basins and
extrapolate differently, and the N_s samples of one of them do not show that spread (docs/
reproduction.md, "An ensemble of training seeds"). Pooling the weight samples of K trainings
gives the equal-weight mixture of their posteriors (Wilson & Izmailov, NeurIPS 2020; deep
ensembles, Lakshminarayanan et al., NeurIPS 2017): Eq. 7 over all pooled samples is then the
mixture's predictive mean, its epistemic variance (each member's spread plus the spread of the
members' means) and its aleatoric variance.

Members have their own input and target normalisation (fitted on their own training points), so
each member's samples are rewritten, exactly up to rounding, into the first member's units:

    first layer   W' = W diag(s0 / sk),  b' = b + W (m0 - mk) / sk      (x normalised by m, s)
    last layer    f' = (f * yk + yk_mean - y0_mean) / y0   (row 0: weights and bias scaled)
                  log sigma'^2 = log sigma^2 + 2 ln(yk / y0)   (row 1: bias shifted)

so that :func:`hpcdens.bnn_predict.predict` with the first member's network (which supplies the
normalisation and activation only) and the pooled samples gives, for every sample, the physical
output of its own member. The one difference: the cap on log sigma^2 (``LOG_VAR_MAX``, applied in
the first member's units) moves by 2 ln(yk / y0) for the other members' samples.

Arrays only: no file I/O (ensemble files: :mod:`hpcdens.io.model`), no MPI.
"""

from __future__ import annotations

import math

import torch

from .bnn import BayesianNet, WeightSamples


def in_units_of(samples: WeightSamples, net: BayesianNet, first: BayesianNet) -> WeightSamples:
    """``samples`` of member ``net`` rewritten for the normalisation buffers of ``first`` (same
    architecture): the same physical mean and sigma^2 at every descriptor."""
    sk, mk = net.x_std.detach().double(), net.x_mean.detach().double()
    s0, m0 = first.x_std.detach().double(), first.x_mean.detach().double()
    yk, yk_mean = float(net.y_std), float(net.y_mean)
    y0, y0_mean = float(first.y_std), float(first.y_mean)
    weights, biases = list(samples.weights), list(samples.biases)
    w, b = weights[0], biases[0]                                   # (n_s, h, n_in), (n_s, h)
    biases[0] = b + torch.einsum("shi,i->sh", w, (m0 - mk) / sk)
    weights[0] = w * (s0 / sk)
    w, b = weights[-1].clone(), biases[-1].clone()                 # (n_s, 2, h), (n_s, 2)
    w[:, 0] *= yk / y0
    b[:, 0] = (b[:, 0] * yk + yk_mean - y0_mean) / y0
    b[:, 1] += 2.0 * math.log(yk / y0)
    weights[-1], biases[-1] = w, b
    return WeightSamples(tuple(weights), tuple(biases), samples.seed)


def pooled(members: list[tuple[BayesianNet, WeightSamples]]) -> WeightSamples:
    """The weight samples of every member (net, its samples) in the first member's units,
    interleaved: sample j of member i at position i + K j while every member has one (K members),
    so the first K samples are one of each member and the first n hold them in turn."""
    first = members[0][0]
    converted = [in_units_of(s, net, first) for net, s in members]
    order = sorted((j, i) for i, (_, s) in enumerate(members) for j in range(s.n_samples))
    n_layers = len(converted[0].weights)
    weights = tuple(torch.stack([converted[i].weights[layer][j] for j, i in order])
                    for layer in range(n_layers))
    biases = tuple(torch.stack([converted[i].biases[layer][j] for j, i in order])
                   for layer in range(n_layers))
    return WeightSamples(weights, biases, None)
