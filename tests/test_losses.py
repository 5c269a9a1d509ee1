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


def _am_noise(fm: float, n: int = 8, T: int = 4096, fs: float = 12000.0, seed: int = 0) -> torch.Tensor:
    """A 3 kHz-band carrier amplitude-modulated at fm Hz: the envelope of a bearing fault."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(T) / fs
    carrier = torch.sin(2 * math.pi * 3000 * t + 2 * math.pi * torch.rand(n, 1, 1, generator=g))
    return carrier * (1 + 0.8 * torch.cos(2 * math.pi * fm * t)) + 0.05 * torch.randn(n, 1, T, generator=g)


def test_envelope_log_spectrum_peaks_at_the_modulation_frequency_and_matches_spectral_module():
    from vibgan.spectral import envelope_spectrum

    x = _am_noise(162.0)
    freqs, db = losses.envelope_log_spectrum(x, 12000.0, (2000.0, 5000.0))
    assert freqs[0] >= 5 and freqs[-1] <= 500
    peak = float(freqs[db.mean(0).argmax()])
    assert abs(peak - 162.0) < 3.0
    # same peak as the validation module's (numpy, Butterworth band-pass, zero-padded) envelope spectrum
    f_np, s_np = envelope_spectrum(x[:, 0].numpy(), 12000.0, fmax=500.0)
    sel = f_np >= 5
    assert abs(f_np[sel][s_np.mean(0)[sel].argmax()] - peak) < 3.0
    # relative to its own mean: the level of the signal does not matter, only the shape
    _, db10 = losses.envelope_log_spectrum(10 * x, 12000.0, (2000.0, 5000.0))
    assert torch.allclose(db, db10, atol=1e-3)


def test_envelope_loss_separates_wrong_defect_rate_and_has_gradients():
    real_db = losses.group_mean(losses.envelope_log_spectrum(_am_noise(162.0), 12000.0, (2000.0, 5000.0))[1],
                                torch.zeros(8, dtype=torch.long), 1)[0]
    same = _am_noise(162.0, seed=1).requires_grad_(True)
    wrong = _am_noise(107.0, seed=1)
    g = torch.zeros(8, dtype=torch.long)

    def loss(x):
        env, present = losses.group_mean(losses.envelope_log_spectrum(x, 12000.0, (2000.0, 5000.0))[1], g, 1)
        return losses.envelope_loss(env, real_db, present)

    l_same, l_wrong = loss(same), loss(wrong)
    assert float(l_wrong) > 3 * float(l_same)
    l_same.backward()
    assert same.grad is not None and torch.isfinite(same.grad).all() and same.grad.abs().sum() > 0


def test_spread_loss_is_zero_at_the_real_spread_and_grows_with_too_little_or_too_much_variety():
    fs, T = 12000.0, 4096
    g = torch.Generator().manual_seed(0)
    freqs = torch.fft.rfftfreq(256, 1 / fs)
    band = (freqs > 0) & (freqs <= 0.45 * fs)
    grp = torch.zeros(32, dtype=torch.long)

    def batch(level_spread: float, n: int = 32) -> torch.Tensor:  # white noise, a per-segment gain: spread in dB
        gains = 10 ** (level_spread * torch.randn(n, 1, 1, generator=g) / 20)
        return torch.randn(n, 1, T, generator=g) * gains

    real = batch(3.0, 128)
    p_real = losses.segment_psd(real, fs)
    real_db, _ = losses.group_log_psd(p_real, grp.new_zeros(128), 1)
    # against the real class mean (the default)
    mean_spread = losses.segment_lsd(p_real, real_db, grp.new_zeros(128), band).mean().reshape(1)
    assert 2.0 < float(mean_spread) < 4.5  # about the 3 dB of gain spread, plus Welch noise

    def loss_mean(x):
        return losses.spread_loss(losses.segment_psd(x, fs), grp, real_db, mean_spread, 1, band)

    same, collapsed, wild = loss_mean(batch(3.0)), loss_mean(batch(0.0)), loss_mean(batch(9.0))
    assert float(same) < 0.05 and float(collapsed) > 0.2 and float(wild) > 0.5

    # pairwise: segments compared with each other
    real_spread, ok = losses.pairwise_spread(p_real, grp.new_zeros(128), 1, band)
    assert ok.all() and 3.0 < float(real_spread) < 5.5  # about sqrt(2) x the 3 dB of gain spread, plus Welch noise

    def loss(x, groups=grp, n_groups=1):
        return losses.spread_loss(losses.segment_psd(x, fs), groups, real_db.expand(n_groups, -1),
                                  real_spread.expand(n_groups), n_groups, band, pairwise=True)

    same, collapsed, wild = loss(batch(3.0)), loss(batch(0.0)), loss(batch(9.0))
    assert float(same) < 0.05 and float(collapsed) > 0.5 and float(wild) > 0.5
    # a uniform batch 3.5 dB off the real level: the real-mean measure counts the bias as variety, the
    # pairwise one still sees a collapsed batch
    biased = batch(0.0) * 10 ** (3.5 / 20)
    assert float(loss_mean(biased)) < 0.1 and float(loss(biased)) > 0.5
    # 16 groups of 2 segments each (a batch holds few of each class): still lowest at the real spread
    pairs = torch.arange(16).repeat_interleave(2)
    per_level = {s: sum(float(loss(batch(s), pairs, 16)) for _ in range(4)) for s in (0.0, 1.5, 3.0, 6.0)}
    assert min(per_level, key=per_level.get) == 3.0, per_level
    # a group with one segment has no pair: it is left out (here: the whole batch)
    assert float(loss(batch(3.0)[:1], grp[:1])) == 0.0
    # pairs that are not allowed (e.g. overlapping windows) do not count
    x = losses.segment_psd(torch.cat([real[:1], real[:1], real[1:2]]), fs)
    allowed = ~torch.tensor([[0, 0, 1], [0, 0, 1], [1, 1, 0]], dtype=torch.bool)
    s_all, _ = losses.pairwise_spread(x, grp[:3], 1, band)
    s_allowed, _ = losses.pairwise_spread(x, grp[:3], 1, band, allowed)
    assert float(s_allowed) < 0.01 < float(s_all)  # only the identical pair (0, 1) is left
