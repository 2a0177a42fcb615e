"""Tests of hpcdens.bnn and hpcdens.bnn_predict: KL, ELBO scaling, learning a noisy 1-D function
with heteroscedastic noise, fixed weight samples (bitwise chunk invariance), normalisation. Model
files: tests/test_model_record.py."""

import math

import numpy as np
import pytest
import torch

from hpcdens import bnn, bnn_predict
from hpcdens.config import ModelConfig
from hpcdens.errors import InputError, ModelError

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def small_model(n_in=37, hidden=(50, 20), activation="silu", seed=0, **kw):
    """A model with a fitted normalisation and non-trivial posterior widths (no training)."""
    gen = torch.Generator().manual_seed(seed)
    model = bnn.BayesianNet(n_in, hidden, activation, generator=gen, **kw)
    x, y = raw_descriptors(500, n_in, seed), torch.rand(500, generator=gen) * 0.1 + 0.02
    model.fit_normalisation(x, y)
    with torch.no_grad():
        for layer in model.layers:
            layer.weight_rho.uniform_(-4, -1, generator=gen)
            layer.bias_rho.uniform_(-4, -1, generator=gen)
    return model


def raw_descriptors(n, n_in, seed=0):
    """Descriptor-like rows: column 0 is a constant Z (pure element), the others of mixed scale."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_in)) * rng.uniform(0.1, 10, n_in) + rng.uniform(-5, 5, n_in)
    x[:, 0] = 14.0
    return x


# ----------------------------------------------------------------------------------------- KL ---

def test_layer_kl_matches_analytic_and_monte_carlo():
    gen = torch.Generator().manual_seed(3)
    layer = bnn.BayesianLinear(6, 4, prior_sigma=0.7, generator=gen)
    with torch.no_grad():
        layer.weight_mu.normal_(0, 0.5, generator=gen)
        layer.bias_mu.normal_(0, 0.5, generator=gen)
        layer.weight_rho.uniform_(-3, 0, generator=gen)
        layer.bias_rho.uniform_(-3, 0, generator=gen)
    mu = torch.cat([layer.weight_mu.flatten(), layer.bias_mu]).detach().double()
    rho = torch.cat([layer.weight_rho.flatten(), layer.bias_rho]).detach().double()
    sig = torch.log1p(torch.exp(rho))
    p = 0.7
    by_hand = torch.sum(torch.log(p / sig) + (sig**2 + mu**2) / (2 * p**2) - 0.5)
    q, prior = torch.distributions.Normal(mu, sig), torch.distributions.Normal(0.0, p)
    assert layer.kl().item() == pytest.approx(by_hand.item(), rel=1e-5)
    library = torch.distributions.kl_divergence(q, prior).sum()
    assert layer.kl().item() == pytest.approx(library.item(), rel=1e-5)
    w = q.sample((200_000,))
    mc = (q.log_prob(w) - prior.log_prob(w)).sum(1)
    stderr = mc.std().item() / math.sqrt(len(mc))
    assert abs(mc.mean().item() - by_hand.item()) < 5 * stderr


def test_kl_vanishes_when_posterior_equals_prior():
    layer = bnn.BayesianLinear(5, 3, prior_sigma=0.3, posterior_sigma0=0.3)
    with torch.no_grad():
        layer.weight_mu.zero_()
    assert abs(layer.kl().item()) < 1e-5
    model = bnn.BayesianNet(4, (8,), prior_sigma=2.0, posterior_sigma0=2.0)
    with torch.no_grad():
        for lay in model.layers:
            lay.weight_mu.zero_()
    assert abs(model.kl().item()) < 1e-4
    assert model.kl().item() == pytest.approx(sum(lay.kl().item() for lay in model.layers))


# --------------------------------------------------------------------------------- ELBO, train ---

def test_elbo_scaling_convention():
    """Eval mode (deterministic): full-data loss = KL/N + mean of -Eq. 8 in normalised units, and
    the average over equal minibatches equals it (the estimator is unbiased for F_KL / N)."""
    model = small_model(n_in=5, hidden=(6,)).double().eval()
    x = torch.as_tensor(raw_descriptors(64, 5, 1))
    y = torch.linspace(0.01, 0.2, 64, dtype=torch.float64)
    full = bnn.elbo_loss(model, x, y, n_train=64)
    f, s = model(x)
    yn = (y - model.y_mean) / model.y_std
    nll = torch.mean(0.5 * s + 0.5 * (f - yn) ** 2 / torch.exp(s))
    assert full.nll == pytest.approx(nll.item(), rel=1e-12)
    assert full.kl == pytest.approx(model.kl().item(), rel=1e-12)
    assert full.loss.item() == pytest.approx(full.kl / 64 + nll.item(), rel=1e-12)
    parts = [bnn.elbo_loss(model, x[i:i + 16], y[i:i + 16], n_train=64).loss.item()
             for i in range(0, 64, 16)]
    assert np.mean(parts) == pytest.approx(full.loss.item(), rel=1e-12)


def test_train_epoch_clips_long_gradients_and_leaves_short_ones_bit_for_bit():
    """With plain SGD (lr 1) a batch moves the parameters by exactly its gradient: a gradient
    longer than ``max_grad_norm`` moves them by a vector of that length in the same direction, a
    shorter one is applied unchanged (bit for bit the unclipped epoch); the returned median norm
    is the unclipped one and ``clipped`` counts the clipped batches."""
    x = torch.as_tensor(raw_descriptors(32, 5, 2))
    y = torch.linspace(0.01, 0.2, 32, dtype=torch.float64)

    def one_step(max_grad_norm):
        model = small_model(n_in=5, hidden=(6,)).double()
        before = torch.cat([p.detach().flatten().clone() for p in model.parameters()])
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        gen = torch.Generator().manual_seed(3)
        terms = bnn.train_epoch(model, opt, [(x, y)], 32, gen, max_grad_norm=max_grad_norm)
        after = torch.cat([p.detach().flatten() for p in model.parameters()])
        return after - before, terms

    step, terms = one_step(math.inf)
    norm = float(torch.linalg.vector_norm(step))
    assert terms["grad_norm"] == pytest.approx(norm, rel=1e-9) and terms["clipped"] == 0
    same, kept = one_step(2 * norm)
    assert torch.equal(same, step) and kept["clipped"] == 0
    short, clipped = one_step(norm / 10)
    assert clipped["clipped"] == 1 and clipped["grad_norm"] == terms["grad_norm"]
    assert float(torch.linalg.vector_norm(short)) == pytest.approx(norm / 10, rel=1e-5)
    assert torch.allclose(short * 10, step, rtol=1e-5, atol=1e-12)


def test_training_mode_samples_the_exact_preactivation_marginal():
    """Local reparameterisation: for a fixed input the layer output has mean x mu^T + b_mu and
    variance x^2 sigma^2T + sigma_b^2; the generator makes it reproducible."""
    gen = torch.Generator().manual_seed(0)
    layer = bnn.BayesianLinear(3, 2, posterior_sigma0=0.2, generator=gen).double()
    x = torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64).repeat(100_000, 1)
    out = layer(x, torch.Generator().manual_seed(1)).detach()
    mean = (x[0] @ layer.weight_mu.T + layer.bias_mu).detach()
    var = ((x[0] ** 2) @ (layer.weight_sigma**2).T + layer.bias_sigma**2).detach()
    assert torch.allclose(out.mean(0), mean, atol=5 * (var / 1e5).sqrt().max().item())
    assert torch.allclose(out.var(0), var, rtol=0.02)
    assert torch.equal(layer(x, torch.Generator().manual_seed(1)).detach(), out)
    assert not torch.equal(layer(x, torch.Generator().manual_seed(2)).detach(), out)
    assert torch.allclose(layer.eval()(x[:2]), mean.expand(2, 2), rtol=1e-14)


def noise_std(x):
    return 0.03 + 0.1 * (x + 1.0)


@pytest.fixture(scope="module")
def trained_1d():
    """y = 0.05 + 0.02 (sin 3x + noise(x) eps) on x in [-1, 1], density-like units: the model
    normalises internally and predicts in the units of y."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    n = 2000
    x = torch.rand(n, 1, generator=gen) * 2 - 1
    y = 0.05 + 0.02 * (torch.sin(3 * x[:, 0]) + noise_std(x[:, 0]) * torch.randn(n, generator=gen))
    model = bnn.BayesianNet(1, (32, 32), "silu", generator=gen)
    model.fit_normalisation(x, y)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = [bnn.train_epoch(model, opt, bnn.minibatches(x, y, 128, gen), n, gen)
               for _ in range(150)]
    return model, model.draw_weight_samples(50, seed=7), history


def test_learns_noisy_function_mean(trained_1d):
    model, samples, history = trained_1d
    assert history[-1]["loss"] < history[0]["loss"] - 1.0
    xt = np.linspace(-0.9, 0.9, 181)[:, None]
    pred = bnn_predict.predict(model, xt, samples)
    err = (pred["mean"] - (0.05 + 0.02 * np.sin(3 * xt[:, 0]))) / 0.02
    # in units of the sine amplitude; noise std 0.04-0.22. Measured: seed 0 max 0.052, rms 0.029;
    # seeds 1-8 max 0.034-0.097, rms 0.018-0.043
    assert np.abs(err).max() < 0.15
    assert np.sqrt(np.mean(err**2)) < 0.06


def test_aleatoric_std_tracks_noise_level(trained_1d):
    model, samples, _ = trained_1d
    xt = np.linspace(-0.9, 0.9, 181)[:, None]
    ale = np.sqrt(bnn_predict.predict(model, xt, samples)["aleatoric_var"]) / 0.02
    true = noise_std(xt[:, 0])
    lo, hi = xt[:, 0] < -0.5, xt[:, 0] > 0.5
    # measured, seed 0: mean 0.070 (true 0.060) for x < -0.5, 0.210 (true 0.200) for x > 0.5,
    # hi/lo 3.02 (true 3.36), correlation 0.993; seeds 1-8: hi/true 1.03-1.14, lo/true 1.18-1.57,
    # hi/lo 2.38-3.18, correlation >= 0.983
    assert ale[hi].mean() / ale[lo].mean() > 2.0
    assert np.abs(ale[hi].mean() / true[hi].mean() - 1) < 0.3
    assert np.abs(ale[lo].mean() / true[lo].mean() - 1) < 0.8
    assert np.corrcoef(ale, true)[0, 1] > 0.95


def test_epistemic_variance_grows_outside_training_range(trained_1d):
    model, samples, _ = trained_1d
    inside = bnn_predict.predict(model, np.linspace(-0.9, 0.9, 181)[:, None],
                                 samples)["epistemic_var"]
    outside = bnn_predict.predict(model, np.array([[-3.0], [3.0]]), samples)["epistemic_var"]
    # outside / max(inside), measured: seed 0 15.5 and 23.1; seeds 1-8 >= 5.9
    assert outside.min() > 3 * inside.max()


# ---------------------------------------------------------------------- fixed weight samples ---

def test_predict_matches_eq7_computed_by_hand():
    model = small_model(n_in=4, hidden=(5, 3), activation="tanh")
    samples = model.draw_weight_samples(6, seed=2)
    x = raw_descriptors(9, 4, 5)
    pred = bnn_predict.predict(model, x, samples)
    xs = (x - model.x_mean.double().numpy()) / model.x_std.double().numpy()
    f, var = [], []
    for j in range(6):
        h = xs
        for i, (w, b) in enumerate(zip(samples.weights, samples.biases)):
            h = h @ w[j].numpy().T + b[j].numpy()
            h = np.tanh(h) if i < 2 else h
        f.append(h[:, 0] * model.y_std.item() + model.y_mean.item())
        var.append(np.exp(h[:, 1]) * model.y_std.item() ** 2)
    f, var = np.array(f), np.array(var)
    np.testing.assert_allclose(pred["mean"], f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(pred["epistemic_var"], f.var(0), rtol=1e-9)
    np.testing.assert_allclose(pred["aleatoric_var"], var.mean(0), rtol=1e-12)
    np.testing.assert_allclose(pred["total_var"], f.var(0) + var.mean(0), rtol=1e-9)
    assert all(v.dtype == np.float64 and v.shape == (9,) for v in pred.values())
    # keep_samples: each weight sample's mean, the same numbers, nothing else changed
    kept = bnn_predict.predict(model, x, samples, keep_samples=True)
    assert kept["samples"].shape == (6, 9)
    np.testing.assert_allclose(kept["samples"], f, rtol=1e-12)
    assert all(np.array_equal(kept[k], pred[k]) for k in pred)


def test_log_variance_is_bounded_in_prediction():
    """A weight sample whose s = log sigma^2 runs away (as at 0.25 % of a CrFeCoNi cell's points,
    std 1e100) gives sigma^2 = exp(LOG_VAR_MAX) y_std^2, in predict and in the evaluation-mode
    forward (training keeps the unbounded s and its gradient); the mean is untouched."""
    model = small_model(n_in=4, hidden=(5, 3), activation="tanh")
    samples = model.draw_weight_samples(4, seed=3)
    x = raw_descriptors(7, 4, 6)
    before = bnn_predict.predict(model, x, samples)
    samples.biases[-1][1, 1] += 1000.0  # sample 1's s output
    after = bnn_predict.predict(model, x, samples)
    y_var = model.y_std.item() ** 2
    assert np.all(after["aleatoric_var"] <= math.exp(bnn.LOG_VAR_MAX) * y_var)
    assert np.all(after["aleatoric_var"] > 0.25 * math.exp(bnn.LOG_VAR_MAX) * y_var)  # 1 of 4
    assert np.array_equal(after["mean"], before["mean"])
    with torch.no_grad():
        model.layers[-1].bias_mu[1] += 1000.0
        model.eval()
        _, s = model(torch.as_tensor(x, dtype=torch.float32))
    assert torch.all(s == bnn.LOG_VAR_MAX)
    model.train()
    assert torch.all(model(torch.as_tensor(x, dtype=torch.float32))[1] > 100)


def test_same_seed_same_prediction_different_seed_different():
    model = small_model()
    x = raw_descriptors(40, 37, 9)
    a = bnn_predict.predict(model, x, model.draw_weight_samples(5, seed=11))
    b = bnn_predict.predict(model, x, model.draw_weight_samples(5, seed=11))
    c = bnn_predict.predict(model, x, model.draw_weight_samples(5, seed=12))
    for key in a:
        assert np.array_equal(a[key], b[key])
        assert not np.allclose(a[key], c[key], rtol=1e-6, atol=0)
    first3 = model.draw_weight_samples(3, seed=11)
    assert all(torch.equal(w3, w5[:3]) for w3, w5 in
               zip(first3.weights, model.draw_weight_samples(5, seed=11).weights))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prediction_independent_of_chunking_bit_for_bit(dtype):
    """What makes predictions independent of the MPI rank count: a point's result depends only on
    its descriptor, not on the chunk it arrived in, the batch size, or the thread count (1, 2 and
    3 threads: work split in shares that are not powers of two as well)."""
    model = small_model()
    samples = model.draw_weight_samples(8, seed=4)
    x = raw_descriptors(1000, 37, 2)
    torch.set_num_threads(2)
    whole = bnn_predict.predict(model, x, samples, batch_size=256, dtype=dtype)
    torch.set_num_threads(3)
    three = bnn_predict.predict(model, x, samples, batch_size=512, dtype=dtype)
    torch.set_num_threads(1)
    cuts = [0, 1, 2, 2, 131, 517, 999, 1000]
    chunked = [bnn_predict.predict(model, x[a:b], samples, batch_size=256, dtype=dtype)
               for a, b in zip(cuts, cuts[1:])]
    other_batch = bnn_predict.predict(model, x, samples, batch_size=100, dtype=dtype)
    for key in whole:
        joined = np.concatenate([c[key] for c in chunked])
        assert np.array_equal(joined, whole[key]), key
        assert np.array_equal(other_batch[key], whole[key]), key
        assert np.array_equal(three[key], whole[key]), key


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_production_widths_independent_of_chunking_bit_for_bit(dtype):
    """The same at the production widths (275-128-128-64-2; the first layer of all samples is one
    GEMM with 30 x 128 columns) and the default batch size."""
    model = small_model(n_in=275, hidden=(128, 128, 64))
    samples = model.draw_weight_samples(30, seed=1)
    x = raw_descriptors(300, 275, 4)
    torch.set_num_threads(2)
    whole = bnn_predict.predict(model, x, samples, dtype=dtype)
    torch.set_num_threads(1)
    cuts = [0, 1, 17, 300]
    chunked = [bnn_predict.predict(model, x[a:b], samples, dtype=dtype)
               for a, b in zip(cuts, cuts[1:])]
    for key in whole:
        assert np.array_equal(np.concatenate([c[key] for c in chunked]), whole[key]), key


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_activation_pieces_do_not_depend_on_thread_count(dtype):
    """torch computes the leftover tail of a vectorised loop, and of each thread's share, with a
    scalar SiLU that differs in the last bit from the vector one (measured: 1-3 of 262 256
    elements differ between 1 and 2, 3 or 5 threads in float32). ``_pointwise_`` works in pieces
    of at most one grain (one thread each) that start and end on vector boundaries."""
    x = torch.randn(262256, generator=torch.Generator().manual_seed(0), dtype=dtype) * 3
    ref = x.clone()
    bnn_predict._pointwise_(bnn_predict.ACTIVATIONS_INPLACE["silu"], ref)
    for threads in (2, 3, 5):
        torch.set_num_threads(threads)
        got = x.clone()
        bnn_predict._pointwise_(bnn_predict.ACTIVATIONS_INPLACE["silu"], got)
        torch.set_num_threads(1)
        assert torch.equal(got, ref), threads


@pytest.fixture(scope="module")
def trained_275():
    """A production-width network (275-128-128-64-2, SiLU) after 8 epochs of training on 1500
    descriptor-like rows with a smooth density-like target (0.01-0.05), and 30 weight samples."""
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    x = torch.as_tensor(raw_descriptors(1500, 275, 1))
    z = (x - x.mean(0)) / x.std(0).clamp_min(1e-9)
    y = (0.03 + 0.02 * torch.tanh(z[:, 1:6].sum(1) / 2) + 0.005 * torch.sin(z[:, 7])).float()
    model = bnn.BayesianNet(275, (128, 128, 64), generator=gen)
    model.fit_normalisation(x, y)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(8):
        bnn.train_epoch(model, opt, bnn.minibatches(x.float(), y, 128, gen), 1500, gen)
    return model.eval(), model.draw_weight_samples(30, seed=0)


def test_float32_prediction_agrees_with_float64(trained_275):
    """The float32 network pass differs from float64 only by its rounding (unit roundoff
    u = 2^-24 = 6e-8 on inputs, weights and each of <= 288-term dot products, four layers): the
    moments are accumulated in float64 from the per-sample outputs in both.

    Measured here (this fixture, seed 0): max |d mean| = 1.7e-6 y_std, max |d epistemic std| =
    9.1e-7 y_std, max relative d aleatoric_var = 4.3e-6 (= max |d s|), max relative d total_var
    = 4.0e-6; seeds 1-3 of the same set-up at most 1.6e-6, 1.2e-6, 3.8e-6 and 3.9e-6. The bounds,
    3e-5 (~500 u, 7x the largest measured), leave room for another CPU or BLAS build (other
    kernels, other rounding) and still catch a reduced-precision slip anywhere (a bf16 or tf32
    GEMM errs by ~1e-3)."""
    model, samples = trained_275
    x = raw_descriptors(1000, 275, 5)
    x[500:] *= 1.5  # half of the rows outside the training distribution
    a = bnn_predict.predict(model, x, samples)
    b = bnn_predict.predict(model, x, samples, dtype=torch.float32)
    assert all(v.dtype == np.float64 and v.shape == (1000,) for v in b.values())
    y_std = model.y_std.item()
    d_mean = np.abs(b["mean"] - a["mean"]).max() / y_std
    d_epi = np.abs(np.sqrt(b["epistemic_var"]) - np.sqrt(a["epistemic_var"])).max() / y_std
    d_ale = np.abs(b["aleatoric_var"] / a["aleatoric_var"] - 1).max()
    d_tot = np.abs(b["total_var"] / a["total_var"] - 1).max()
    assert 0 < d_mean < 3e-5
    assert d_epi < 3e-5
    assert 0 < d_ale < 3e-5
    assert d_tot < 3e-5


def test_float32_mean_weights_and_bad_dtype():
    """One sample (the posterior means): zero epistemic variance in float32 too; only float32 and
    float64 are accepted."""
    model = small_model().double().eval()
    x = raw_descriptors(20, 37, 3)
    pred = bnn_predict.predict(model, x, model.mean_weights(), dtype=torch.float32)
    f, _ = model(torch.as_tensor(x))
    np.testing.assert_allclose(pred["mean"], (f * model.y_std + model.y_mean).detach().numpy(),
                               rtol=1e-5)
    assert np.all(pred["epistemic_var"] == 0)
    with pytest.raises(InputError, match="dtype"):
        bnn_predict.predict(model, x, model.mean_weights(), dtype=torch.float16)


def test_empty_input_and_mismatched_samples():
    model = small_model()
    out = bnn_predict.predict(model, np.zeros((0, 37)), model.draw_weight_samples(3, 0))
    assert all(v.shape == (0,) for v in out.values())
    other = small_model(hidden=(50, 21))
    with pytest.raises(ModelError, match="do not fit"):
        bnn_predict.predict(model, np.zeros((2, 37)), other.draw_weight_samples(2, 0))
    with pytest.raises(InputError, match=r"shape \(n, 37\)"):
        bnn_predict.predict(model, np.zeros((2, 36)), model.draw_weight_samples(2, 0))
    bad = np.zeros((3, 37))
    bad[1, 4] = np.nan
    with pytest.raises(InputError, match="1 descriptor rows"):
        bnn_predict.predict(model, bad, model.draw_weight_samples(2, 0))


def test_mean_weights_give_zero_epistemic_and_match_eval_forward():
    model = small_model().double().eval()
    x = raw_descriptors(20, 37, 3)
    pred = bnn_predict.predict(model, x, model.mean_weights())
    f, s = model(torch.as_tensor(x))
    np.testing.assert_allclose(pred["mean"], (f * model.y_std + model.y_mean).detach().numpy(),
                               rtol=1e-12)
    assert np.all(pred["epistemic_var"] == 0)


# ------------------------------------------------------------------ normalisation, model files ---

def test_constant_features_normalise_to_zero_without_nan():
    model = bnn.BayesianNet(3, (4,))
    x = np.column_stack([np.full(10, 14.0), np.full(10, 0.3), np.arange(10.0)])
    model.fit_normalisation(x, np.full(10, 0.05))
    assert model.x_std[:2].tolist() == [1.0, 1.0] and model.y_std.item() == 1.0
    assert model.x_std[2].item() == pytest.approx(np.arange(10.0).std())
    out = bnn_predict.predict(model, x, model.draw_weight_samples(3, 0))
    assert all(np.isfinite(v).all() for v in out.values())


def test_build_model_from_config_and_bad_arguments():
    model = bnn.build_model(10, ModelConfig(hidden_layers=(8, 4), prior_sigma=0.5))
    assert model.architecture()["hidden_layers"] == [8, 4]
    assert [lay.prior_sigma for lay in model.layers] == [0.5, 0.5, 0.5]
    with pytest.raises(InputError, match="activation"):
        bnn.BayesianNet(3, (4,), activation="relu6")
    with pytest.raises(InputError, match="n_samples"):
        model.draw_weight_samples(0, 1)


def test_bench_bnn_reports_both_dtypes():
    """``hpcdens bench bnn`` on a tiny network: the keys it always had (float64, the default
    dtype) and both dtypes' rates; a smoke test of the code, not of the speed."""
    from hpcdens.bench.model import bench_bnn, format_bnn

    r = bench_bnn(m=4, hidden=(8,), samples=2, points=40, batch_size=16, repeats=1)
    for key in ("wall_s", "points_per_s", "flops_per_point_sample", "gflops", "mm_fp32_gflops",
                "mm_fp64_gflops", "fraction_fp32", "fraction_fp64"):
        assert r[key] > 0, key
    assert r["flops_per_point_sample"] == 2 * (20 * 8 + 8 * 2)
    assert r["fraction_fp32"] == r["by_dtype"]["float64"]["fraction_fp32"]
    assert set(r["by_dtype"]) == {"float32", "float64"}
    text = format_bnn(r)
    assert "predict float32" in text and "predict float64" in text and "% of fp32 matmul" in text


def test_beta_nll_weights_points_by_their_predicted_variance():
    """[train] nll_beta: the data term is the mean of the per-point terms of Eq. 8 weighted by
    sigma^(2 beta), normalised to mean 1, with no gradient through the weights; the reported nll
    stays Eq. 8's mean."""
    model = small_model(n_in=5, hidden=(6,)).double().eval()
    x = torch.as_tensor(raw_descriptors(32, 5, 2))
    y = torch.linspace(0.01, 0.2, 32, dtype=torch.float64)
    plain = bnn.elbo_loss(model, x, y, n_train=32)
    beta = bnn.elbo_loss(model, x, y, n_train=32, nll_beta=0.5)
    def eq8_terms():   # per-point terms of Eq. 8 by hand, and s
        f, s = model(x)
        return 0.5 * s + 0.5 * ((f - (y - model.y_mean) / model.y_std) ** 2) / torch.exp(s), s

    per, s = eq8_terms()
    w = torch.exp(0.5 * s.detach())
    assert beta.nll == pytest.approx(plain.nll, rel=1e-12)
    expected = plain.kl / 32 + float((per * w).sum().detach() / w.sum())
    assert beta.loss.item() == pytest.approx(expected, rel=1e-12)
    assert float(s.detach().std()) > 0.01   # the weights differ, so the two losses must too
    assert beta.loss.item() != pytest.approx(plain.loss.item(), rel=1e-6)
    # gradients: those of the weighted sum with the weights held fixed
    model.zero_grad()
    beta.loss.backward()
    got = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    per, _ = eq8_terms()
    (model.kl() / 32 + (per * w).sum() / w.sum()).backward()
    for g, p in zip(got, model.parameters()):
        assert torch.allclose(g, p.grad, rtol=1e-10, atol=1e-14)
