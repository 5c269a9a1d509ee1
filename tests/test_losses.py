"""Loss functions at known values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import signal as sps

from vibgan import losses


def t(*v):
    return [torch.tensor(v, dtype=torch.float32).view(-1, 1)]


def test_minimax_at_zero_logits_is_2_log_2():
    # D(x) = D(G(z)) = 0.5: -[log 0.5 + log 0.5] = 2 log 2, the value at the minimax equilibrium
    assert losses.d_minimax(t(0.0, 0.0), t(0.0, 0.0)).item() == pytest.approx(2 * math.log(2), rel=1e-6)
    # generator: log(1 - 0.5) = -log 2; non-saturating: -log 0.5 = log 2
    assert losses.g_minimax(t(0.0)).item() == pytest.approx(-math.log(2), rel=1e-6)
    assert losses.g_nonsaturating(t(0.0)).item() == pytest.approx(math.log(2), rel=1e-6)


def test_minimax_matches_probabilities():
    real, fake = 2.0, -1.0
    d_real, d_fake = 1 / (1 + math.exp(-real)), 1 / (1 + math.exp(-fake))
    want = -(math.log(d_real) + math.log(1 - d_fake))
    assert losses.d_minimax(t(real), t(fake)).item() == pytest.approx(want, rel=1e-6)
    assert losses.g_minimax(t(fake)).item() == pytest.approx(math.log(1 - d_fake), rel=1e-6)
    assert losses.g_nonsaturating(t(fake)).item() == pytest.approx(-math.log(d_fake), rel=1e-6)


def test_minimax_generator_saturates_where_nonsaturating_does_not():
    # a confident D (logit -8 on fakes): the original objective's gradient vanishes, the non-saturating one not
    z = torch.tensor([[-8.0]], requires_grad=True)
    (g1,) = torch.autograd.grad(losses.g_minimax([z]), z)
    (g2,) = torch.autograd.grad(losses.g_nonsaturating([z]), z)
    assert abs(g1.item()) < 1e-3 < abs(g2.item())


def test_hinge_values():
    assert losses.d_hinge(t(2.0, 0.5), t(-2.0, 0.0)).item() == pytest.approx((0 + 0.5) / 2 + (0 + 1) / 2)
    assert losses.g_hinge(t(1.0, 3.0)).item() == pytest.approx(-2.0)


def test_losses_sum_over_scales():
    a = losses.d_hinge(t(0.0), t(0.0))  # one scale
    assert losses.d_hinge(t(0.0) + t(0.0), t(0.0) + t(0.0)).item() == pytest.approx(2 * a.item())  # two scales


def test_gradient_penalty_of_linear_critic():
    # critic D(x) = w . x has gradient w everywhere: penalty = (|w| - 1)^2
    w = torch.full((1, 1, 8), 0.5)
    pen = losses.gradient_penalty(lambda x: [(x * w).sum(dim=(1, 2))], torch.randn(4, 1, 8), torch.randn(4, 1, 8))
    assert pen.item() == pytest.approx((math.sqrt(8 * 0.25) - 1) ** 2, rel=1e-5)


def test_welch_psd_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 1, 4096)).astype(np.float32)
    f, want = sps.welch(x, 12000, window="hann", nperseg=256, noverlap=128, detrend="constant",
                        scaling="density", axis=-1)
    got = losses.welch_psd(torch.from_numpy(x), 12000).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-12)


def test_spectral_loss_is_squared_lsd_and_6db_for_double_amplitude():
    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.standard_normal((8, 1, 2048)).astype(np.float32))
    y = torch.zeros(8, dtype=torch.long)
    real_db, present = losses.class_log_psd(x, y, 2, 12000)
    fake_db, _ = losses.class_log_psd(2 * x, y, 2, 12000)
    band = torch.ones(real_db.shape[1], dtype=torch.bool)
    assert present.tolist() == [True, False]
    assert losses.spectral_loss(real_db, real_db, present, band).item() == pytest.approx(0.0, abs=1e-9)
    assert math.sqrt(losses.spectral_loss(fake_db, real_db, present, band).item()) == pytest.approx(6.0206, abs=1e-3)


def test_kurtosis_of_gaussian_and_impulses():
    g = torch.Generator().manual_seed(0)
    gauss = torch.randn(4, 1, 20000, generator=g)
    assert losses.kurtosis(gauss).mean().item() == pytest.approx(3.0, abs=0.15)
    spikes = torch.zeros(1, 1, 1000)
    spikes[..., ::100] = 1.0  # 10 equal spikes in 1000 samples: kurtosis ~ 1/p = 100 * (1 - p)^... ~ 98
    assert losses.kurtosis(spikes).item() > 50
