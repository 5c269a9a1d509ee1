"""Training: a step moves both networks, resume equals an uninterrupted run, the NaN guard, learning."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vibgan import losses
from vibgan.checkpoints import latest_checkpoint, load_checkpoint
from vibgan.config import load_config
from vibgan.datasets import prepare_data
from vibgan.errors import TrainingError
from vibgan.tracking import MemoryTracker
from vibgan.train import train

SMALL = [
    "data.simulate.faults=['normal', 'inner']", "data.simulate.rpms=[1797.0]", "data.simulate.duration_s=2.0",
    "data.segment_length=1024", "model.widths=[32, 24, 16, 8]", "model.res_blocks=[0, 1, 1, 0]",
    "model.d_channels=8", "train.batch_size=4", "train.progress=false", "train.eval_every=2",
    "train.sample_every=1000", "train.checkpoint_every=3", "train.log_every=1", "tracking.enabled=false",
]


def small_cfg(tmp_path, *extra):
    return load_config(None, [*SMALL, f"out={str(tmp_path)!r}", *extra])


def params(module):
    return [p.detach().clone() for p in module.state_dict().values()]


def test_one_step_changes_both_networks(tmp_path):
    from vibgan.networks import build_models

    cfg = small_cfg(tmp_path, "train.steps=1")
    data = prepare_data(cfg)
    torch.manual_seed(cfg.train.seed)
    g0, d0 = build_models(cfg.model, n_classes=2, channels=1, length=1024, fs=data.fs)
    res = train(cfg, data, MemoryTracker())
    sd = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert sd["step"] == 1
    g_changed = [not torch.equal(a, sd["G"][k]) for k, a in g0.state_dict().items() if a.is_floating_point()]
    d_changed = [not torch.equal(a, sd["D"][k]) for k, a in d0.state_dict().items() if a.is_floating_point()]
    assert sum(g_changed) > len(g_changed) // 2 and sum(d_changed) > len(d_changed) // 2
    assert res.steps == 1 and res.generator_dir.joinpath("generator.safetensors").is_file()


def test_resume_equals_uninterrupted(tmp_path):
    full = train(small_cfg(tmp_path / "a", "train.steps=6"), prepare_data(small_cfg(tmp_path / "a")), MemoryTracker())
    cfg_b = small_cfg(tmp_path / "b", "train.steps=3")
    train(cfg_b, prepare_data(cfg_b), MemoryTracker())
    cfg_b6 = small_cfg(tmp_path / "b", "train.steps=6")
    resumed = train(cfg_b6, prepare_data(cfg_b6), MemoryTracker(), resume=True)
    a = load_checkpoint(latest_checkpoint(tmp_path / "a" / "checkpoints"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "b" / "checkpoints"))
    assert a["step"] == b["step"] == 6
    for part in ("G", "D", "G_ema"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), f"{part}.{k} differs after resume"
    assert full.history["loss/d"] == resumed.history["loss/d"]
    x1 = full.generator.sample("inner", 2, seed=3)
    x2 = resumed.generator.sample("inner", 2, seed=3)
    np.testing.assert_array_equal(x1, x2)


def test_checkpoints_are_kept_and_atomic(tmp_path):
    cfg = small_cfg(tmp_path, "train.steps=9", "train.checkpoint_every=2", "train.keep_checkpoints=2")
    train(cfg, prepare_data(cfg), MemoryTracker())
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt_00000008.pt", "ckpt_00000009.pt"]  # last 2 kept, no temp files left


def test_nan_guard_rolls_back_and_continues(tmp_path, monkeypatch):
    d_loss, g_loss = losses.ADVERSARIAL["hinge"]
    calls = {"n": 0}

    def flaky(real, fake):
        calls["n"] += 1
        out = d_loss(real, fake)
        return out * float("nan") if calls["n"] == 5 else out

    monkeypatch.setitem(losses.ADVERSARIAL, "hinge", (flaky, g_loss))
    cfg = small_cfg(tmp_path, "train.steps=8")
    tracker = MemoryTracker()
    res = train(cfg, prepare_data(cfg), tracker)
    assert res.steps == 8
    assert tracker.metrics["train/rollback"] == [(3, 1.0)]  # rolled back to the step-3 checkpoint
    sd = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert all(torch.isfinite(v).all() for v in sd["G"].values() if v.is_floating_point())


def test_nan_guard_stops_with_a_clear_message(tmp_path, monkeypatch):
    d_loss, g_loss = losses.ADVERSARIAL["hinge"]
    monkeypatch.setitem(losses.ADVERSARIAL, "hinge", (lambda r, f: d_loss(r, f) * float("nan"), g_loss))
    cfg = small_cfg(tmp_path, "train.steps=8", "train.max_rollbacks=2")
    with pytest.raises(TrainingError, match="rollbacks"):
        train(cfg, prepare_data(cfg), MemoryTracker())


def test_same_seed_same_result(tmp_path):
    r1 = train(small_cfg(tmp_path / "1", "train.steps=3"), prepare_data(small_cfg(tmp_path / "1")), MemoryTracker())
    r2 = train(small_cfg(tmp_path / "2", "train.steps=3"), prepare_data(small_cfg(tmp_path / "2")), MemoryTracker())
    np.testing.assert_array_equal(r1.generator.sample("normal", 2, seed=0), r2.generator.sample("normal", 2, seed=0))


@pytest.mark.parametrize("loss", ["minimax", "nonsaturating", "wgan-gp"])
def test_every_objective_trains(tmp_path, loss):
    cfg = small_cfg(tmp_path, "train.steps=2", f"train.loss={loss!r}", "train.d_steps=2")
    res = train(cfg, prepare_data(cfg), MemoryTracker())
    assert all(np.isfinite(v).all() for v in res.history.values())


def test_bf16_autocast_trains(tmp_path):
    cfg = small_cfg(tmp_path, "train.steps=2", "train.precision='bf16'")
    res = train(cfg, prepare_data(cfg), MemoryTracker())
    assert np.isfinite(res.generator.sample("inner", 2, seed=0)).all()


def test_resume_without_checkpoint_is_a_clear_error(tmp_path):
    cfg = small_cfg(tmp_path, "train.steps=2")
    with pytest.raises(TrainingError, match="no checkpoint"):
        train(cfg, prepare_data(cfg), MemoryTracker(), resume=True)


@pytest.mark.slow
def test_sinusoid_gan_learns_clean_sinusoids(tmp_path):
    """The seed GAN (configs/sinusoid.toml): >= 90 % of generated curves are sin(b x + c) with b in [0.5, 2]."""
    from pathlib import Path

    from vibgan.synthetic import fit_sinusoid

    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "sinusoid.toml",
                      [f"out={str(tmp_path)!r}", "train.progress=false", "tracking.enabled=false"])
    res = train(cfg, prepare_data(cfg), MemoryTracker())
    y = res.generator.sample("sinusoid", 512, seed=0)[:, 0, :]
    fit = fit_sinusoid(y)
    clean = fit.residual_rms < 0.1
    assert clean.mean() >= 0.9
    # variety: the frequencies spread over the seed range instead of collapsing onto one
    b = fit.b[clean]
    assert b.min() < 0.8 and b.max() > 1.6 and b.std() > 0.25


@pytest.mark.slow
def test_conditional_gan_puts_each_envelope_peak_at_its_fault_frequency(tmp_path):
    """Two simulated classes (inner and outer race at 1797 rpm): each generated class's envelope spectrum
    peaks at its own characteristic frequency (BPFI vs BPFO), the other class's frequency does not win."""
    from vibgan.bearing import fault_frequencies
    from vibgan.spectral import envelope_spectrum

    # one torch thread, whatever earlier tests left set: a short run's result depends on the float summation order
    # (at 80 steps and 2 threads seed 0's inner class peaked at 132 Hz; on the 2026-12-01 machine at 1 thread, at
    # 192.6 Hz, own/other 1.6). 120 steps pass seeds 0-2 there: own/other 3.9-5.7 (inner), 5.1-8.6 (outer). On the
    # host of 2026-12-02's third session the same code gives 2.33 (inner) and 1.93 (outer) at 120 steps, 1.75-2.74
    # at 160 steps (seeds 0, 1): the margin is host-dependent, so the test asks for 1.3 x, still far from the ~1 of
    # a generator that puts both classes' frequencies in every segment.
    # spectral=0: the weights this test was tuned with (train.lambdas overrides once replaced the whole table)
    cfg = load_config(None, [
        "data.simulate.faults=['inner', 'outer']", "data.simulate.rpms=[1797.0]", "data.simulate.duration_s=6.0",
        "data.simulate.severity=2.0", "train.steps=120", "train.batch_size=8", "train.progress=false",
        "train.eval_every=1000", "train.sample_every=1000", "train.checkpoint_every=1000",
        "tracking.enabled=false", "train.lambdas.spectral=0.0", "train.lambdas.kurtosis=2.0", "train.lambdas.envelope=1.0",
        "train.threads=1",
        f"out={str(tmp_path)!r}",
    ])
    res = train(cfg, prepare_data(cfg), MemoryTracker())
    f = fault_frequencies(1797)
    for label, own, other in (("inner", f["bpfi"], f["bpfo"]), ("outer", f["bpfo"], f["bpfi"])):
        x = res.generator.sample(label, 16, seed=1)[:, 0, :]
        freqs, spec = envelope_spectrum(x, 12000.0)
        mean = spec.mean(axis=0)
        band = (freqs > 60) & (freqs < 200)  # the fundamentals of both faults, away from shaft harmonics' 1x/2x
        peak = freqs[band][np.argmax(mean[band])]
        assert abs(peak - own) < 0.03 * own, f"{label}: envelope peak at {peak:.1f} Hz, expected {own:.1f} Hz"
        near = lambda fc, m=mean, f=freqs: m[(f > 0.97 * fc) & (f < 1.03 * fc)].max()  # noqa: E731
        assert near(own) > 1.3 * near(other), (label, near(own) / near(other))


def test_spread_pairwise_switches_the_spread_measure(tmp_path):
    logged = {}
    for pairwise in (False, True):
        cfg = small_cfg(tmp_path / str(pairwise), "train.steps=3", "train.lambdas.spectral=0.0", "train.lambdas.spread=10.0",
                        f"train.spread_pairwise={str(pairwise).lower()}")
        tracker = MemoryTracker()
        train(cfg, prepare_data(cfg), tracker)
        logged[pairwise] = [v for _, v in tracker.metrics["loss/g/spread"]]
    for values in logged.values():
        assert len(values) == 3 and all(np.isfinite(v) and v > 0 for v in values)
    # the same seed and batches; only the measure differs, and so does the loss
    assert logged[True] != pytest.approx(logged[False], rel=0.01)


def test_impulse_path_places_one_impact_per_period_to_a_fraction_of_a_sample():
    """A unit kernel on the BPFI train: the impacts' weights sum to one per crossing, their centres of mass
    sit fs / BPFI apart and at the phase the latent asked for, and a longer kernel is that kernel repeated."""
    from vibgan.bearing import fault_frequencies
    from vibgan.config import ModelConfig
    from vibgan.networks import build_models

    fs, T, taps = 12000.0, 4096, 32
    G, _ = build_models(ModelConfig(impulse_taps=taps), n_classes=2, channels=1, length=T, fs=fs)
    bpfi = fault_frequencies(1797)["bpfi"]
    freq = torch.tensor([[bpfi] * 5]).float()  # every train at BPFI; only train 3's kernel is set
    phase0 = torch.full((1, 5), 2 * np.pi * 0.3)  # first impact 0.7 period after t = 0
    seg, jitter = torch.zeros(1, 5), torch.zeros(1, 5, T + taps)
    y = torch.tensor([1])
    with torch.no_grad():
        G.impulse.kernel[1, 0, 3, 0] = 1.0
        x = G.impulse(y, freq, phase0, seg, jitter, fs, T)[0, 0].numpy()
    period = fs / bpfi
    k = np.arange(int((T - 0.7 * period) // period) + 1)
    expected = (k + 0.7) * period  # impact times in samples
    centres = []
    for e in expected[expected < T - 1]:
        i = int(np.floor(e))
        w = x[i: i + 2]
        assert w.sum() == pytest.approx(1.0, abs=1e-4)
        centres.append(i + w[1] / w.sum())
    np.testing.assert_allclose(centres, expected[expected < T - 1], atol=1e-3)
    assert len(centres) - 1e-3 <= abs(x).sum() <= len(centres) + 1  # nothing else (the last may straddle the end)
    # a ring-down kernel: the output is the exact impulse train (impacts before t = 0 included) convolved with it
    ring = np.exp(-np.arange(taps) / 5.0) * np.cos(2 * np.pi * 3000 / fs * np.arange(taps))
    with torch.no_grad():
        G.impulse.kernel[1, 0, 3] = torch.from_numpy(ring).float()
        xr = G.impulse(y, freq, phase0, seg, jitter, fs, T)[0, 0].numpy()
    origin = taps + 2  # reference train sample `origin` is t = 0
    ref = np.zeros(origin + T + 2)
    for e in (np.arange(-20, 80) + 0.7) * period:
        i, frac = int(np.floor(e)), e - np.floor(e)
        if 0 <= origin + i < len(ref) - 1:
            ref[origin + i] += 1 - frac
            ref[origin + i + 1] += frac
    np.testing.assert_allclose(xr, np.convolve(ref, ring)[origin: origin + T], atol=1e-4)
    # an impact half a sample before the segment or half a sample after its last sample gives that sample half
    with torch.no_grad():
        G.impulse.kernel[1, 0, 3] = 0.0
        G.impulse.kernel[1, 0, 3, 0] = 1.0
        for at, index in ((-0.5, 0), (T - 0.5, T - 1)):
            frac_cycles = (bpfi * at / fs) % 1.0
            p0 = torch.full((1, 5), 2 * np.pi * (1.0 - frac_cycles))  # an integer phase exactly at `at`
            xe = G.impulse(y, freq, p0, seg, jitter, fs, T)[0, 0].numpy()
            assert xe[index] == pytest.approx(0.5, abs=1e-3), (at, xe[max(0, index - 2): index + 3])


def _impact_wise_matches_the_definition(imp, y, freq, phase0, seg, jitter, fs, T):
    """``imp._forward`` against ``imp._forward_dense`` on one batch: outputs within 1e-5 of the largest, and the
    gradients of a weighted sum in kernel, mod and log_sigma within 1e-4; returns both outputs (fast, defined)."""
    outs, grads = [], []
    for fn in (imp._forward, imp._forward_dense):
        imp.zero_grad()
        x = fn(y, freq, phase0, seg, jitter, fs, T)
        (x * torch.linspace(-1, 1, T)).sum().backward()
        outs.append(x.detach())
        grads.append([p.grad.clone() for p in (imp.kernel, imp.mod, imp.log_sigma)])
    assert (outs[0] - outs[1]).abs().max() < 1e-5 * outs[1].abs().max()
    for g_fast, g_ref in zip(*grads):
        assert torch.allclose(g_fast, g_ref, rtol=1e-4, atol=1e-4 * g_ref.abs().max().item())
    return outs


@pytest.mark.parametrize("cell_ms", [0.0, 0.25])
def test_the_impact_wise_impulse_path_is_the_sample_wise_definition(cell_ms):
    """``ImpulsePath._forward`` evaluates phases and gains at the impacts only; the definition evaluates them at
    every train sample. Random kernels, modulation, speeds 300-3600 rpm, classes and latents, one random gain
    per sample or per 3-sample cell: outputs and gradients agree to float32 rounding, and a plausible slip (one
    impact a sample late) would not."""
    from vibgan.config import ModelConfig
    from vibgan.networks import build_models

    fs, T = 12000.0, 1024
    G, _ = build_models(ModelConfig(impulse_taps=64, jitter_cell_ms=cell_ms), n_classes=3, channels=2, length=T, fs=fs)
    imp = G.impulse
    assert imp.cell == (3 if cell_ms else 1)
    assert G.sample_latent(2, T)[5].shape == (2, 5, -(-(T + 64) // imp.cell))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        imp.kernel.normal_(generator=gen)
        imp.mod.normal_(0, 0.3, generator=gen)
    b = 12
    y = torch.randint(0, 3, (b,), generator=gen)
    rpm = torch.cat([torch.tensor([300.0, 3600.0]), 600 + 2400 * torch.rand(b - 2, generator=gen)])
    freq = (rpm / 60).unsqueeze(-1) * G.ratios
    phase0 = 2 * np.pi * torch.rand(b, 5, generator=gen)
    seg, jitter = torch.randn(b, 5, generator=gen), torch.randn(b, 5, -(-(T + 64) // imp.cell), generator=gen)
    outs = _impact_wise_matches_the_definition(imp, y, freq, phase0, seg, jitter, fs, T)
    scale = outs[1].abs().max()
    late = imp._forward_dense(y, freq, phase0 - 2 * np.pi * freq / fs, seg, jitter, fs, T).detach()
    assert (late - outs[1]).abs().max() > 0.05 * scale


def test_the_impulse_path_computes_only_the_trains_its_classes_use():
    """With fault trains (normal: none, inner: BPFI, outer: BPFO, unknown: all) the path computes only the
    trains of the classes in the batch; the others' kernels are zero, so the output and the gradients are the
    definition's (every train, masked) to float32 rounding, for mixed, one-class and healthy-only batches. A
    selection that dropped a used train (an outer-race batch without BPFO) would give zeros and not pass."""
    from vibgan.config import ModelConfig
    from vibgan.networks import _active_trains, build_models, train_mask

    fs, T = 12000.0, 1024
    G, _ = build_models(ModelConfig(impulse_taps=64), n_classes=4, channels=1, length=T, fs=fs)
    imp = G.impulse
    imp.train_mask.copy_(train_mask(["normal", "inner", "outer", None]))
    assert _active_trains(imp.train_mask, torch.tensor([1, 1])).tolist() == [3]
    assert _active_trains(imp.train_mask, torch.tensor([0, 1, 2])).tolist() == [2, 3]
    assert _active_trains(imp.train_mask, torch.tensor([0, 0])).tolist() == [0]  # nothing used: one masked train
    assert _active_trains(imp.train_mask, torch.tensor([3, 1])) is None  # the unknown class uses all five
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        imp.kernel.normal_(generator=gen)
        imp.mod.normal_(0, 0.3, generator=gen)
    b = 8
    rpm = 600 + 2400 * torch.rand(b, generator=gen)
    freq = (rpm / 60).unsqueeze(-1) * G.ratios
    phase0 = 2 * np.pi * torch.rand(b, 5, generator=gen)
    seg, jitter = torch.randn(b, 5, generator=gen), torch.randn(b, 5, T + 64, generator=gen)
    for y in (torch.tensor([0, 1, 2, 1, 2, 0, 1, 2]), torch.full((b,), 1), torch.full((b,), 2)):
        outs = _impact_wise_matches_the_definition(imp, y, freq, phase0, seg, jitter, fs, T)
        assert outs[1].abs().max() > 0
    healthy = imp._forward(torch.zeros(b, dtype=torch.long), freq, phase0, seg, jitter, fs, T)
    assert healthy.shape == (b, 1, T) and healthy.abs().max() == 0


def test_a_generator_without_a_full_rate_level_upsamples_in_its_output_layer():
    """model.out_upsample = 4: the last level runs at a quarter of the full rate and the output layer is a
    transposed convolution; the hop includes it, any multiple of it can be generated, and the phase inputs of
    the last level are those a quarter-rate level can hold (nothing at or above 0.4 of its rate)."""
    from vibgan.config import ModelConfig
    from vibgan.networks import build_models

    cfg = ModelConfig(widths=[16, 8, 4], upsample=[4, 4], res_blocks=[0, 1, 0], out_upsample=4, impulse_taps=16)
    assert cfg.hop == 64
    G, _ = build_models(cfg, n_classes=2, channels=1, length=1024, fs=12000.0)
    assert isinstance(G.out, torch.nn.ConvTranspose1d) and G.hop == 64
    y, cond = torch.tensor([0, 1]), torch.tensor([[1797.0, 0.0], [1797.0, 0.0]])
    seen = []
    film = G._phase_film
    G._phase_film = lambda level, *a: seen.append((level, film(level, *a)[0].shape)) or film(level, *a)
    with torch.no_grad():
        for t in (1024, 1088):
            assert G(G.sample_latent(2, t), y, cond).shape == (2, 1, t)
    assert seen[2] == (2, (2, 4, 1, 1024 // 4))  # the last level's phase inputs at a quarter of the full rate
    assert G.sample_latent(2, 1024)[3].shape == (2, 1, 256)  # its noise too: nothing is drawn that is not used
    fast = torch.tensor([[60000.0, 0.0]] * 2)  # 1 kHz shaft: BPFO, BPFI and 2 x BSF are too fast for 3 kHz
    with torch.no_grad():
        ph = G.phase_features(fast, torch.full((2, 5), 0.3), torch.ones(2, 5), 256, 4)
    zero = [bool(ph[0, k].abs().max() == 0) for k in range(5)]
    assert zero == [4 * f >= 0.4 * 12000.0 for f in (1000 * G.ratios).tolist()] == [False, False, True, True, True]


def test_impulse_path_trains_and_survives_save_and_load(tmp_path):
    from vibgan.generator import TrainedGenerator

    cfg = small_cfg(tmp_path, "train.steps=3", "model.impulse_taps=64", "train.lambdas.spectral=0.0",
                    "train.lambdas.envelope=1.0")
    res = train(cfg, prepare_data(cfg), MemoryTracker())
    sd = load_checkpoint(latest_checkpoint(tmp_path / "checkpoints"))
    assert sd["G"]["impulse.kernel"].abs().max() > 0  # zero at start; the lr_impulse group moved it
    loaded = TrainedGenerator.load(res.generator_dir)
    a, b = res.generator.sample("inner", 4, seed=3), loaded.sample("inner", 4, seed=3)
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all() and a.std() > 0
    with torch.no_grad():  # the path is in the output: without its kernels the samples change
        loaded.model.impulse.kernel.zero_()
    assert np.abs(loaded.sample("inner", 4, seed=3) - a).max() > 1e-4


def test_train_mask_gives_each_fault_type_its_own_train():
    """fr, FTF, BPFO, BPFI, 2 x BSF: outer BPFO, inner BPFI, ball 2 x BSF, normal none, unknown all."""
    from vibgan.networks import train_mask

    m = train_mask(["normal", "inner", "outer", "ball", None, "other"])
    assert m.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1] * 5, [1] * 5]


def test_fault_trains_and_ring_down_train_and_survive_save_and_load(tmp_path):
    """model.impulse_trains = "fault": the healthy class gets no impacts (its path output is exactly zero) and
    the inner-race class only BPFI's; model.impulse_decay_ms weights tap i by exp(-t_i / decay). Both come
    back with the saved generator, and a model saved without the mask loads with every train on."""
    from vibgan.generator import TrainedGenerator

    cfg = small_cfg(tmp_path, "train.steps=3", "model.impulse_taps=64", "model.impulse_trains='fault'",
                    "model.impulse_decay_ms=1.0", "train.lambdas.spectral=0.0", "train.lambdas.envelope=1.0")
    data = prepare_data(cfg)
    assert data.class_faults() == ["normal", "inner"]
    res = train(cfg, data, MemoryTracker())
    G = res.generator.model
    assert G.impulse.train_mask.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 1, 0]]
    np.testing.assert_allclose(G.impulse.taper.numpy(), np.exp(-np.arange(64) / 12.0), rtol=1e-6)
    k = G.impulse.kernels().detach()
    assert k[0].abs().max() == 0 and k[1, :, [0, 1, 2, 4]].abs().max() == 0
    assert k[1, :, 3].abs().max() > 0  # the lr_impulse group moved the BPFI kernel
    raw = G.impulse.kernel.detach()[1, 0, 3]
    np.testing.assert_allclose(k[1, 0, 3].numpy(), (raw * torch.exp(-torch.arange(64) / 12.0)).numpy(), rtol=1e-6)
    latent = G.sample_latent(4, 1024)
    cond = torch.tensor([[1797.0, 0.0]] * 4)
    with torch.no_grad():
        _, imp = G.sources(latent, torch.tensor([0, 0, 1, 1]), cond)
    assert imp[:2].abs().max() == 0 and imp[2:].abs().max() > 0
    loaded = TrainedGenerator.load(res.generator_dir)
    np.testing.assert_array_equal(res.generator.sample("inner", 4, seed=3), loaded.sample("inner", 4, seed=3))
    assert loaded.model.impulse.train_mask.tolist() == G.impulse.train_mask.tolist()
    from vibgan.networks import with_optional_buffers

    weights = {k: v for k, v in G.state_dict().items() if k != "impulse.train_mask"}  # saved before the mask
    assert with_optional_buffers(G, weights)["impulse.train_mask"].tolist() == [[1.0] * 5] * 2


def test_a_fresh_run_sets_an_earlier_runs_checkpoints_aside(tmp_path, capsys):
    """Rerunning into the same out folder without --resume: the earlier run's checkpoints move to
    checkpoints/previous/, not mixed with the new run's (they would sort after its early ones: pruning would
    delete the new checkpoints and --resume would continue the old run); one earlier run is kept."""
    train(small_cfg(tmp_path, "train.steps=6"), prepare_data(small_cfg(tmp_path)), MemoryTracker())
    ckpt = tmp_path / "checkpoints"
    old = sorted(p.name for p in ckpt.glob("ckpt_*.pt"))
    assert old[-1] == "ckpt_00000006.pt"
    train(small_cfg(tmp_path, "train.steps=3"), prepare_data(small_cfg(tmp_path)), MemoryTracker())
    assert "held an earlier run's checkpoints" in capsys.readouterr().out
    assert [p.name for p in ckpt.glob("ckpt_*.pt")] == ["ckpt_00000003.pt"]
    assert load_checkpoint(latest_checkpoint(ckpt))["step"] == 3
    assert sorted(p.name for p in (ckpt / "previous").glob("ckpt_*.pt")) == old
    res = train(small_cfg(tmp_path, "train.steps=4"), prepare_data(small_cfg(tmp_path)), MemoryTracker(), resume=True)
    assert res.steps == 4 and load_checkpoint(latest_checkpoint(ckpt))["step"] == 4
    train(small_cfg(tmp_path, "train.steps=3"), prepare_data(small_cfg(tmp_path)), MemoryTracker())
    assert sorted(p.name for p in (ckpt / "previous").glob("ckpt_*.pt")) == ["ckpt_00000003.pt", "ckpt_00000004.pt"]
    # resuming with another architecture is a clear error, not a state_dict traceback
    with pytest.raises(TrainingError, match=r"does not fit the model.*\[model\]"):
        train(small_cfg(tmp_path, "train.steps=5", "model.impulse_taps=16"), prepare_data(small_cfg(tmp_path)),
              MemoryTracker(), resume=True)
    # nothing at the top level but an earlier run aside: --resume says where it is
    for p in ckpt.glob("ckpt_*.pt"):
        p.unlink()
    with pytest.raises(TrainingError, match="previous/"):
        train(small_cfg(tmp_path, "train.steps=5"), prepare_data(small_cfg(tmp_path)), MemoryTracker(), resume=True)


def _level_varying_recordings(fs: float = 12000.0, seconds: float = 12.0, seed: int = 0):
    """Two classes of band-limited noise at 1797 rpm: 'steady' at a constant level, 'intermittent' whose
    2-4 kHz band wanders in level by a random 0-12 dB every 4,096 samples (an intermittent fault's resonance)."""
    from scipy import signal as sps

    from vibgan.recordings import Recording

    rng = np.random.default_rng(seed)
    n = int(seconds * fs)
    base = sps.sosfilt(sps.butter(4, 4500, fs=fs, output="sos"), rng.standard_normal(n))
    res = sps.sosfilt(sps.butter(4, [2000, 4000], btype="band", fs=fs, output="sos"), rng.standard_normal(n))
    knots = rng.uniform(0, 12, n // 4096 + 2)  # dB, one every 4,096 samples, joined smoothly (no clicks)
    level = 10 ** (np.interp(np.arange(n) / 4096, np.arange(len(knots)), knots) / 20)
    recs = []
    for label, x in (("steady", base + 2 * res), ("intermittent", base + 2 * res * level)):
        recs.append(Recording(x[None].astype(np.float32), fs, {"label": label, "rpm": 1797.0, "load_hp": 0.0,
                                                              "fault": "normal", "source": label}))
    return recs


def test_variety_calibration_gives_an_intermittent_class_its_spread(one_torch_thread):
    """An untrained generator varies like a Gaussian texture; calibrate_variety finds the 2-4 kHz mode of the
    intermittent class and a segment gain that brings its spread ratio (validate's metric, fresh samples, held-out
    windows) from far below 1 into 0.8-1.25, while the steady class keeps no gain."""
    from vibgan.calibrate import calibrate_equalizer, calibrate_variety, variety_modes
    from vibgan.config import ModelConfig
    from vibgan.datasets import TrainData
    from vibgan.generator import TrainedGenerator
    from vibgan.networks import ConvGenerator
    from vibgan.validate import fidelity_report, fidelity_sets

    torch.manual_seed(0)
    data = TrainData.from_recordings(_level_varying_recordings(), length=4096, train_fraction=0.7)
    modes = variety_modes(data, 0, 256)
    f = np.fft.rfftfreq(256, 1 / data.fs)
    share = float((modes[1, (f > 1500) & (f < 4500)] ** 2).sum() / (modes[1] ** 2).sum())
    assert share > 0.8, f"the intermittent class's mode should sit in its 2-4 kHz band and skirts, has {share:.2f} of it there"

    G = ConvGenerator(2, 1, data.fs, ModelConfig(widths=[32, 24, 16, 8], res_blocks=[0, 1, 1, 0], variety=True)).eval()

    def spread_ratios():
        trained = TrainedGenerator(G, data.normalizer, {"classes": data.classes, "fs": data.fs, "channels": ["DE"],
                                                        "length": 4096, "conditions": data.conditions})
        real, real_train, fake, fcs = fidelity_sets(trained, data, 48, seed=9)
        rep = fidelity_report(real, fake, data.fs, real_train=real_train, c2st=False)
        return {k: v.spread_ratio for k, v in rep.classes.items()}

    calibrate_equalizer(G, data, 1)
    before = spread_ratios()
    chosen = calibrate_variety(G, data, 1)
    calibrate_equalizer(G, data, 1)
    after = spread_ratios()
    assert before["intermittent"] < 0.6, before
    assert 0.8 <= after["intermittent"] <= 1.25, (before, after, chosen)
    assert chosen["intermittent"]["segment_gain_db"] > 0 and chosen["steady"]["segment_gain_db"] == 0, chosen
    assert 0.8 <= after["steady"] <= 1.25, (after, chosen)


def test_impulse_gain_scales_only_the_impact_path_and_old_saves_load_at_identity(tmp_path):
    """The impulse-gain knob multiplies the deterministic impacts and nothing else (the equaliser is linear,
    so out(g) is affine in g with the impacts' contribution as slope); a generator saved before the knob
    existed loads with it at 1 and samples exactly as before."""
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from vibgan.config import ModelConfig
    from vibgan.errors import ModelError
    from vibgan.files import sha256_file
    from vibgan.generator import TrainedGenerator
    from vibgan.networks import ConvGenerator

    torch.manual_seed(0)
    cfg = ModelConfig(widths=[16, 12, 8, 8], res_blocks=[0, 1, 1, 0], impulse_taps=16, variety=True)
    G = ConvGenerator(2, 1, 12000.0, cfg).eval()
    with torch.no_grad():
        G.impulse.kernel.normal_(0, 0.5)
        G.eq.log_gain.normal_(0, 0.3)
    y, cond = torch.tensor([0, 1]), torch.tensor([[1797.0, 0.0], [1797.0, 0.0]])
    latent = G.sample_latent(2, 2048, torch.Generator().manual_seed(1))

    def out(gain: float) -> torch.Tensor:
        with torch.no_grad():
            G.impulse_gain.fill_(gain)
            return G(latent, y, cond)

    x0, x1, x3 = out(0.0), out(1.0), out(3.0)
    impacts = x1 - x0
    assert impacts.abs().max() > 0.05 * x0.abs().max()  # the path is there
    torch.testing.assert_close(x3 - x0, 3 * impacts, atol=1e-4, rtol=1e-4)
    with torch.no_grad():
        G.impulse_gain.copy_(torch.tensor([1.0, 2.0]))  # per class: class 0 keeps gain 1
        mixed = G(latent, y, cond)
    torch.testing.assert_close(mixed[0], x1[0])
    torch.testing.assert_close(mixed[1], x0[1] + 2 * impacts[1], atol=1e-4, rtol=1e-4)

    G.impulse_gain.fill_(1.0)
    meta = {"classes": ["a", "b"], "fs": 12000.0, "channels": ["DE"], "length": 2048,
            "conditions": {"a": [[1797.0, 0.0]], "b": [[1797.0, 0.0]]}, "model": cfg.__dict__}
    d = TrainedGenerator(G, None, meta).save(tmp_path / "g")
    weights = load_file(str(d / "generator.safetensors"))
    del weights["impulse_gain"]  # as written before the knob existed
    save_file(weights, str(d / "generator.safetensors"))
    m = json.loads((d / "generator.json").read_text())
    m["weights_sha256"] = sha256_file(d / "generator.safetensors")
    (d / "generator.json").write_text(json.dumps(m))
    loaded = TrainedGenerator.load(d)
    assert torch.equal(loaded.model.impulse_gain, torch.ones(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(latent, y, cond), x1)
    # any other missing weight is still an error
    del weights["impulse.kernel"]
    save_file(weights, str(d / "generator.safetensors"))
    m["weights_sha256"] = sha256_file(d / "generator.safetensors")
    (d / "generator.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="impulse.kernel"):
        TrainedGenerator.load(d)


def test_a_checkpoint_written_before_the_impulse_gain_knob_resumes_at_identity(tmp_path):
    """TrainState.load_state_dict fills knobs a checkpoint predates with their identity values (G and its EMA);
    the rest loads exactly, and a checkpoint missing a real weight is still refused."""
    import copy

    from vibgan.checkpoints import TrainState
    from vibgan.config import ModelConfig
    from vibgan.networks import build_models

    def state(seed: int) -> TrainState:
        torch.manual_seed(seed)
        G, D = build_models(ModelConfig(widths=[16, 12, 8, 8], res_blocks=[0, 1, 1, 0], impulse_taps=16, variety=True),
                            n_classes=2, channels=1, length=1024, fs=12000.0)
        G_ema = copy.deepcopy(G)
        return TrainState(G, D, G_ema, torch.optim.Adam(G.parameters()), torch.optim.Adam(D.parameters()),
                          torch.Generator().manual_seed(seed))

    old = state(0)
    with torch.no_grad():
        old.G.impulse.kernel.normal_()
    sd = old.state_dict()
    for net in ("G", "G_ema"):
        del sd[net]["impulse_gain"]
    new = state(1)
    with torch.no_grad():
        new.G.impulse_gain.fill_(3.0)  # a stale value must not survive: the checkpoint's networks get identity
    new.load_state_dict(sd)
    assert torch.equal(new.G.impulse_gain, torch.ones(2)) and torch.equal(new.G_ema.impulse_gain, torch.ones(2))
    assert torch.equal(new.G.impulse.kernel, old.G.impulse.kernel)
    del sd["G"]["impulse.kernel"]
    with pytest.raises(RuntimeError, match="impulse.kernel"):
        state(2).load_state_dict(sd)


def test_variety_calibration_turns_down_impacts_that_are_too_impulsive(one_torch_thread):
    """Real windows of Gaussian noise (kurtosis 3) against a generator whose impulse path emits sharp spikes:
    calibrate_variety picks the smallest impulse gain of its grid for both classes, sets the buffer to it, and
    that lowers the generated kurtosis it reports."""
    from vibgan.calibrate import VARIETY_GRIDS, calibrate_variety
    from vibgan.config import ModelConfig
    from vibgan.datasets import TrainData
    from vibgan.networks import ConvGenerator

    torch.manual_seed(0)
    data = TrainData.from_recordings(_level_varying_recordings(seconds=6.0), length=4096, train_fraction=0.7)
    G = ConvGenerator(2, 1, data.fs, ModelConfig(widths=[16, 12, 8, 8], res_blocks=[0, 1, 1, 0], impulse_taps=16,
                                                 variety=True)).eval()
    with torch.no_grad():
        G.impulse.kernel[:, 0, :, 0] = 3.0  # one-sample impacts on every train, far above the network's noise
    fixed = {"temperature": (1.0,), "slip_scale": (1.0,), "segment_gain_db": (0.0,)}
    at_one = calibrate_variety(G, data, 1, n_per_group=24, rounds=1, grids={**fixed, "impulse_gain": (1.0,)})
    chosen = calibrate_variety(G, data, 1, n_per_group=24, rounds=1, grids=fixed)
    low = min(VARIETY_GRIDS["impulse_gain"])
    for label in data.classes:
        assert at_one[label]["kurtosis_ratio"] > 1.5, at_one  # the spikes make it too impulsive
        assert chosen[label]["impulse_gain"] == pytest.approx(low), chosen
        assert chosen[label]["kurtosis_ratio"] < at_one[label]["kurtosis_ratio"], (at_one, chosen)
    assert torch.allclose(G.impulse_gain, torch.full((2,), low))


def test_a_hook_stops_the_loop_with_a_flag_and_a_checkpoint_there(tmp_path):
    stops = []

    def after_step(state):
        if state.step == 2:
            state.stop = True
            stops.append(state.step)

    cfg = small_cfg(tmp_path, "train.steps=10", "train.checkpoint_every=5")
    res = train(cfg, prepare_data(cfg), MemoryTracker(), hooks={"after_step": after_step})
    assert stops == [2] and res.steps == 2 and res.stopped
    assert res.checkpoint is not None and res.checkpoint.name == "ckpt_00000002.pt"  # resumable from there
    assert not (tmp_path / "generator").exists()  # a stopped run exports nothing
    resumed = train(small_cfg(tmp_path, "train.steps=3", "train.checkpoint_every=5"), prepare_data(cfg),
                    MemoryTracker(), resume=True)
    assert resumed.steps == 3 and not resumed.stopped


def test_the_generator_loss_is_the_weighted_sum_of_its_logged_terms(tmp_path):
    cfg = small_cfg(tmp_path, "train.steps=2", "train.lambdas.kurtosis=0.5", "train.lambdas.spectral=2.0")
    tracker = MemoryTracker()
    train(cfg, prepare_data(cfg), tracker)
    terms = {k: [v for _, v in tracker.metrics[k]] for k in tracker.metrics if k.startswith("loss/g/")}
    assert set(terms) == {"loss/g/adv", "loss/g/spectral", "loss/g/kurtosis"}  # zero-weight terms are absent
    lam = cfg.train.lambdas
    for i, total in enumerate(v for _, v in tracker.metrics["loss/g"]):
        expected = sum(lam[k.rsplit("/", 1)[-1]] * vals[i] for k, vals in terms.items())
        assert total == pytest.approx(expected, rel=1e-5)


def test_the_generator_owns_its_parameter_groups():
    from vibgan.config import ModelConfig
    from vibgan.networks import build_models

    G, _ = build_models(ModelConfig(impulse_taps=16), n_classes=2, channels=1, length=1024, fs=12000.0)
    groups = G.parameter_groups(1e-4, lr_eq=1e-2, lr_phase=2e-3, lr_impulse=3e-3)
    assert [g["lr"] for g in groups] == [1e-4, 1e-2, 2e-3, 3e-3]
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in G.parameters()}  # a partition
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in G.eq.parameters()}
    mlp, _ = build_models(ModelConfig(kind="mlp"), n_classes=1, channels=1, length=64, fs=1.0)
    assert [len(g["params"]) for g in mlp.parameter_groups(1e-3, lr_eq=1.0)] == [len(list(mlp.parameters()))]


def test_cli_resume_without_a_checkpoint_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    from helpers import load_script

    cli = load_script("pipelines/train.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("VIBGAN_HOME", str(tmp_path / "home"))
    out = tmp_path / "run"
    assert cli.main(["--resume", "--out", str(out), "--set", "train.steps=2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --resume: no checkpoint in") and err.count("\n") == 1
    assert not out.exists() and not (tmp_path / "home").exists()  # no MLflow run, no files
    assert cli._interrupted(out) == "interrupted before the first checkpoint: nothing to resume; rerun without --resume"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "ckpt_00000200.pt").write_bytes(b"x")
    assert "ckpt_00000200.pt) is intact; rerun with --resume" in cli._interrupted(out)


def test_calibration_reuses_the_network_pass_and_matches_generate(tmp_path, one_torch_thread):
    """calibrate._Sources gives generate()'s output exactly, and a trial that changes only the impulse gain,
    the segment gain or the equaliser costs no new network pass; temperature and slip do."""
    import torch
    from helpers import tiny_config

    from vibgan.calibrate import _eq_sets, _Sources
    from vibgan.datasets import prepare_data
    from vibgan.generator import generate
    from vibgan.networks import build_models

    cfg = tiny_config(tmp_path, extra=["model.variety=true", "model.impulse_taps=32"])
    data = prepare_data(cfg)
    G, _ = build_models(cfg.model, n_classes=len(data.classes), channels=len(data.channels), length=data.length,
                        fs=data.fs)
    G.eval()
    with torch.no_grad():
        G.eq.log_gain.normal_(0, 0.3)
        G.impulse_gain.fill_(1.7)
        sets = _eq_sets(G, data, seed=5, iters=2, n_per_group=3)
        outputs = _Sources(G, sets, chunk=4)
        first = [outputs(i) for i in range(2)]
        for i, (latent, y, c) in enumerate(sets):
            assert torch.equal(first[i], generate(G, latent, y, c, chunk=4))
        assert outputs.passes == 2
        G.impulse_gain.fill_(0.5)
        G.segment_mode.normal_(0, 0.1)
        G.eq.log_gain.add_(0.2)
        assert torch.equal(outputs(1), generate(G, *sets[1], chunk=4)) and outputs.passes == 2  # cached
        G.temperature.fill_(1.4)
        x = outputs(0)
        assert outputs.passes == 3 and torch.equal(x, generate(G, *sets[0], chunk=4))
        assert not torch.allclose(x, first[0])


def test_the_fft_equaliser_is_the_direct_convolution():
    from vibgan.networks import ClassEqualizer, _fast_len

    assert [_fast_len(n) for n in (4352, 1280, 100, 4097, 4096)] == [4608, 1280, 128, 4608, 4096]
    eq = ClassEqualizer(3, 64)
    with torch.no_grad():
        eq.log_gain.normal_(0, 0.5, generator=torch.Generator().manual_seed(0))
    x = torch.randn(5, 2, 1000, generator=torch.Generator().manual_seed(1))
    x[:, :, :10] = 30.0  # the zero padding at the ends matters: no wrap-around from the other end
    y = torch.tensor([0, 1, 2, 1, 0])
    extra = torch.randn(5, 33, generator=torch.Generator().manual_seed(2)) * 0.1
    ref = eq.forward_direct(x, y, extra)
    out = eq(x, y, extra)
    assert out.shape == x.shape and torch.allclose(out, ref, atol=1e-4 * ref.abs().max().item(), rtol=0)
    assert not torch.allclose(out[:, :, -40:], torch.roll(ref, 7, dims=-1)[:, :, -40:], atol=1e-3)


@pytest.mark.parametrize("upsample,out_upsample,res_blocks,length", [
    ([4, 4], 4, [1, 1, 0], 1024),  # the fast body: the output layer is a transposed convolution
    ([3, 2], 1, [0, 1, 2], 576),  # an odd stride (output_padding 1) and an ordinary output convolution
])
def test_the_channels_last_body_is_the_defined_one(upsample, out_upsample, res_blocks, length):
    """ConvGenerator._body (2D convolutions on (B, W, 1, T) channels-last, sub-pixel upsampling, the phase
    FiLM with its masks folded into the weights) gives the numbers and the gradients of _body_1d (the modules on (B, W, T))
    from the same weights; a wrong phase interleave or a shifted tap would not."""
    from vibgan.config import ModelConfig
    from vibgan.networks import _subpixel_weight, build_models, up_cl

    cfg = ModelConfig(widths=[24, 16, 8], upsample=upsample, res_blocks=res_blocks, out_upsample=out_upsample,
                      impulse_taps=16, noise_dim=8)
    torch.manual_seed(0)
    G, _ = build_models(cfg, n_classes=3, channels=2, length=length, fs=12000.0)
    with torch.no_grad():
        for p in G.parameters():
            p.normal_(0, 0.2)
    y, cond = torch.tensor([0, 2, 1]), torch.tensor([[1797.0, 0.0], [900.0, 1.0], [1500.0, 2.0]])
    latent = G.sample_latent(3, length, generator=torch.Generator().manual_seed(1))
    outs, grads = [], []
    for reference in (True, False):
        G.reference_body = reference
        x = G(latent, y, cond)
        outs.append(x)
        grads.append(torch.autograd.grad((x * torch.linspace(-1, 1, length)).square().sum(), list(G.parameters())))
    ref, out = outs
    assert out.shape == ref.shape == (3, 2, length)
    assert ref.abs().max() > 1  # the body is far from zero, so the comparison means something
    assert torch.allclose(out, ref, atol=1e-5 * ref.abs().max().item(), rtol=0)
    for g_out, g_ref in zip(*grads[::-1]):
        assert torch.allclose(g_out, g_ref, atol=1e-4 * g_ref.abs().max().item() + 1e-12, rtol=0)
    # the sub-pixel form alone, at a length no level uses
    up = G.ups[0][0]
    h = torch.randn(3, up.in_channels, 17)
    got = up_cl(up, h.unsqueeze(2).contiguous(memory_format=torch.channels_last)).squeeze(2)
    assert torch.allclose(got, up(h), atol=1e-5, rtol=0)
    w, _ = _subpixel_weight(up)
    assert w.shape == (up.stride[0] * up.out_channels, up.in_channels, 1, 3)


def test_impulse_speed_exponent_scales_the_impacts_with_speed_and_old_weights_load_without_it():
    """model.impulse_speed_exp: every impact's amplitude is (shaft rate / ref_hz) ** exp, so at twice the reference
    speed the path's output (the same latent) is 2 ** exp times as large in amplitude per impact; 0 leaves it."""
    from vibgan.config import ModelConfig
    from vibgan.networks import build_models, with_optional_buffers

    cfg = ModelConfig(impulse_taps=32, impulse_speed_exp=1.5)
    G, _ = build_models(cfg, n_classes=2, channels=1, length=1024, fs=12000.0, ref_rpm=1200.0)
    assert float(G.impulse.ref_hz) == 20.0 and G.impulse.speed_exp.tolist() == [1.5, 1.5]
    with torch.no_grad():
        G.impulse.kernel.normal_()
    y = torch.tensor([1])
    freq = torch.tensor([[20.0, 8.0, 70.0, 110.0, 90.0]])
    args = (torch.zeros(1, 5), torch.zeros(1, 5), torch.zeros(1, 5, 2000), 12000.0, 1024)
    one = G.impulse(y, freq, *args)
    # the same trains at the same sample positions need the same frequencies: compare the log-gain directly
    assert float(G.impulse._speed_gain(y, freq * 2)) == pytest.approx(1.5 * math.log(2.0), rel=1e-6)
    G.impulse.speed_exp.zero_()
    assert torch.equal(G.impulse(y, freq, *args), one)  # at the reference speed the exponent changes nothing
    assert float(G.impulse._speed_gain(y, freq * 2)) == 0.0
    weights = {k: v for k, v in G.state_dict().items() if k not in ("impulse.speed_exp", "impulse.ref_hz")}
    full = with_optional_buffers(G, weights)
    assert full["impulse.speed_exp"].tolist() == [0.0, 0.0] and float(full["impulse.ref_hz"]) == 1.0
