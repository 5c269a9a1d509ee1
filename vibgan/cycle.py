"""CycleGAN-style translation of vibration windows between two operating conditions (the lecture notes' idea,
Zhu et al. 2017, in 1D): the condition-transfer baseline of ``pipelines/benchmark.py transfer``.

Two translators, G: source -> target and F: target -> source, and a critic per condition are trained on
*unpaired* windows of the classes recorded at both conditions: least-squares adversarial losses, a cycle
loss (F(G(x)) = x, G(F(y)) = y, L1) and an optional identity loss (G(y) = y, L1; off by default, see ``fit``).
Each translator is residual and starts as the identity (its last layer is zero), so an untrained or
undertrained one leaves the signal as recorded. ``translate`` then carries windows, or whole recordings
(the networks are convolutional and take any length), of the classes recorded at the source only.

Small by design (two cores must train it in minutes): 1D convolutions of ``width`` channels, random crops
of ``crop`` samples. Signals are scaled by one factor, the pooled standard deviation of both sides, so a
level change between the conditions stays visible to the critics and is learned.
"""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from vibgan.errors import DataError


class _Translator(nn.Module):
    """x + a stack of 1D convolutions (length-preserving); the last layer starts at zero: the identity."""

    def __init__(self, channels: int, width: int, blocks: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        layers: list[nn.Module] = [nn.Conv1d(channels, width, kernel, padding=pad), nn.LeakyReLU(0.2)]
        for _ in range(blocks):
            layers += [nn.Conv1d(width, width, kernel, padding=pad), nn.LeakyReLU(0.2)]
        last = nn.Conv1d(width, channels, kernel, padding=pad)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.body = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Critic(nn.Module):
    """Strided 1D convolutions scoring overlapping patches (PatchGAN): (B, C, T) -> (B, patches)."""

    def __init__(self, channels: int, width: int, kernel: int) -> None:
        super().__init__()
        chans = [channels, width, 2 * width, 2 * width]
        layers: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv1d(a, b, kernel, stride=4, padding=kernel // 2), nn.LeakyReLU(0.2)]
        self.body = nn.Sequential(*layers, nn.Conv1d(chans[-1], 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).flatten(1)


def _ls(score: torch.Tensor, target: float) -> torch.Tensor:
    """Least-squares GAN loss of critic scores against a constant target."""
    return ((score - target) ** 2).mean()


class CycleTranslator:
    """Unpaired source -> target translation of vibration windows (see the module docstring)."""

    def __init__(self, channels: int = 1, *, width: int = 16, blocks: int = 3, kernel: int = 15) -> None:
        self.channels = int(channels)
        self.shape = (width, blocks, kernel)
        self._build(0)
        self.scale = 1.0
        self.history: dict[str, list[float]] = {"d": [], "g": [], "cycle": []}
        self.train_s = 0.0

    def _build(self, seed: int) -> None:
        width, blocks, kernel = self.shape
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))  # the same seed, the same initial weights
            self.G = _Translator(self.channels, width, blocks, kernel)
            self.F = _Translator(self.channels, width, blocks, kernel)
            self.D_t = _Critic(self.channels, width, kernel)
            self.D_s = _Critic(self.channels, width, kernel)

    def fit(self, source: np.ndarray, target: np.ndarray, *, steps: int = 1000, batch: int = 16, crop: int = 512,
            lr: float = 5e-4, cycle: float = 10.0, identity: float = 0.0, seed: int = 0) -> CycleTranslator:
        """Train on windows (N, C, T) at the source and (M, C, T) at the target condition (unpaired).

        ``identity`` defaults to 0, unlike image CycleGAN's: G(target) = target asks a translator to leave a
        target window alone while changing a source window that differs from it only by the levels to be
        learned, and a filter cannot do both (on a +6 dB band change, weight 5 held the translator at the
        identity)."""
        xs = np.asarray(source, dtype=np.float32)
        xt = np.asarray(target, dtype=np.float32)
        for name, x in (("source", xs), ("target", xt)):
            if x.ndim != 3 or x.shape[1] != self.channels or len(x) < 2:
                raise DataError(f"CycleTranslator.fit: {name}: expected at least 2 windows (N, {self.channels}, T), "
                                f"got shape {x.shape}")
            if not np.isfinite(x).all():
                raise DataError(f"CycleTranslator.fit: {name}: windows hold NaN or Inf values")
        crop = min(crop, xs.shape[-1], xt.shape[-1])
        self.scale = float(np.sqrt(0.5 * (np.mean(xs**2) + np.mean(xt**2)))) or 1.0
        self._build(seed)
        gen = torch.Generator().manual_seed(int(seed))
        S = torch.from_numpy(xs / self.scale)
        Tt = torch.from_numpy(xt / self.scale)
        opt_g = torch.optim.Adam([*self.G.parameters(), *self.F.parameters()], lr=lr, betas=(0.5, 0.999))
        opt_d = torch.optim.Adam([*self.D_t.parameters(), *self.D_s.parameters()], lr=lr, betas=(0.5, 0.999))

        def draw(x: torch.Tensor) -> torch.Tensor:
            i = torch.randint(0, len(x), (batch,), generator=gen)
            o = torch.randint(0, x.shape[-1] - crop + 1, (batch,), generator=gen)
            idx = o[:, None] + torch.arange(crop)[None, :]
            return torch.gather(x[i], 2, idx[:, None, :].expand(-1, x.shape[1], -1))

        t0 = time.perf_counter()
        for m in (self.G, self.F, self.D_t, self.D_s):
            m.train()
        for _ in range(int(steps)):
            a, b = draw(S), draw(Tt)
            fake_b, fake_a = self.G(a), self.F(b)
            # critics: real -> 1, translated -> 0 (least squares)
            d_loss = (_ls(self.D_t(b), 1.0) + _ls(self.D_t(fake_b.detach()), 0.0)
                      + _ls(self.D_s(a), 1.0) + _ls(self.D_s(fake_a.detach()), 0.0)) / 2
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            adv = _ls(self.D_t(fake_b), 1.0) + _ls(self.D_s(fake_a), 1.0)
            cyc = F.l1_loss(self.F(fake_b), a) + F.l1_loss(self.G(fake_a), b)
            idt = F.l1_loss(self.G(b), b) + F.l1_loss(self.F(a), a)
            g_loss = adv + cycle * cyc + identity * idt
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            self.history["d"].append(float(d_loss.detach()))
            self.history["g"].append(float(adv.detach()))
            self.history["cycle"].append(float(cyc.detach()))
        self.train_s = time.perf_counter() - t0
        return self

    @torch.no_grad()
    def translate(self, x: np.ndarray, *, batch: int = 64) -> np.ndarray:
        """Source-condition signals (N, C, T) (any T) carried to the target condition, in their units."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 3 or x.shape[1] != self.channels:
            raise DataError(f"CycleTranslator.translate: expected (N, {self.channels}, T), got shape {x.shape}")
        self.G.eval()
        out = [self.G(torch.from_numpy(x[i:i + batch] / self.scale)).numpy() * self.scale
               for i in range(0, len(x), batch)]
        return np.concatenate(out).astype(np.float32) if out else x.copy()
