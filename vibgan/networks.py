"""Generators and discriminators: the seed dense GANs and the conditional 1D convolutional GAN.

Shapes: signals are ``(B, C, T)``; class indices ``(B,)`` int64; operating conditions ``cond`` ``(B, 2)``
holding raw ``[rpm, load_hp]``. Every generator draws its own latent with ``sample_latent`` (a tuple of
tensors, so a seeded ``torch.Generator`` reproduces a sample exactly) and maps it with ``forward``.
Discriminators return a list of logit tensors (one per scale), never probabilities: the losses apply
the sigmoid inside binary cross-entropy, which is the seed's sigmoid + BCE computed stably."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.parametrizations import spectral_norm as _sn

from vibgan.bearing import fault_frequencies
from vibgan.config import ModelConfig
from vibgan.errors import ConfigError

#: Scale of the raw operating conditions fed to the networks: rpm / 3000, load_hp / 3.
COND_SCALE = (3000.0, 3.0)


def _cond_features(cond: torch.Tensor) -> torch.Tensor:
    return cond / cond.new_tensor(COND_SCALE)


def characteristic_ratios(geometry: str = "6205") -> list[float]:
    """Frequencies that shape bearing vibration, as multiples of the shaft rate: fr, FTF, BPFO, BPFI, 2 x BSF."""
    f = fault_frequencies(60.0, geometry)  # 1 Hz shaft
    return [1.0, f["ftf"], f["bpfo"], f["bpfi"], 2.0 * f["bsf"]]


class MLPGenerator(nn.Module):
    """Dense generator of the lecture notes: noise -> hidden (ReLU) ... -> C*T (tanh / sigmoid / linear).

    The sinusoid GAN is ``noise_dim=64, hidden=[256, 64], out tanh, length 64`` with uniform noise;
    the Keras-style GAN is ``noise_dim=100, hidden=[256], out sigmoid, length 784``. With more than one
    class a one-hot class code is appended to the noise (a conditional GAN, Mirza & Osindero).
    """
    def __init__(self, noise_dim: int, hidden: list[int], channels: int, length: int, n_classes: int = 1,
                 out_activation: str = "tanh", noise: str = "uniform") -> None:
        super().__init__()
        self.noise_dim, self.channels, self.length, self.n_classes = noise_dim, channels, length, n_classes
        self.noise = noise
        dims = [noise_dim + (n_classes if n_classes > 1 else 0), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        layers.append(nn.Linear(dims[-1], channels * length))
        act = {"tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(), "none": nn.Identity()}[out_activation]
        layers.append(act)
        self.net = nn.Sequential(*layers)

    def sample_latent(self, n: int, length: int | None = None, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu", cond: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if length is not None and length != self.length:
            raise ConfigError(f"dense generator: produces exactly {self.length} samples, {length} were asked")
        if self.noise == "uniform":  # U[-1, 1]^d, the seed GAN's noise
            z = torch.rand(n, self.noise_dim, generator=generator, device=device) * 2 - 1
        else:
            z = torch.randn(n, self.noise_dim, generator=generator, device=device)
        return (z,)

    def forward(self, latent: tuple[torch.Tensor, ...], y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        (z,) = latent
        if self.n_classes > 1:
            z = torch.cat([z, F.one_hot(y, self.n_classes).to(z.dtype)], dim=1)
        return self.net(z).view(z.shape[0], self.channels, self.length)  # (B, C, T)

    def parameter_groups(self, lr: float, **_rates: float) -> list[dict]:
        """Optimiser parameter groups: one, at ``lr`` (the dense GAN has no parts with rates of their own)."""
        return [{"params": list(self.parameters()), "lr": lr}]


class MLPDiscriminator(nn.Module):
    """Dense discriminator: C*T -> hidden (ReLU, dropout) ... -> 1 logit (the sigmoid lives in the loss)."""
    def __init__(self, channels: int, length: int, hidden: list[int], n_classes: int = 1, dropout: float = 0.4) -> None:
        super().__init__()
        self.n_classes = n_classes
        dims = [channels * length + (n_classes if n_classes > 1 else 0), *hidden]
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU(), nn.Dropout(dropout)]
        layers.append(nn.Linear(dims[-1], 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> list[torch.Tensor]:
        h = x.flatten(1)  # (B, C*T)
        if self.n_classes > 1:
            h = torch.cat([h, F.one_hot(y, self.n_classes).to(h.dtype)], dim=1)
        return [self.net(h)]  # [(B, 1)]


class FiLM(nn.Module):
    """Feature-wise affine conditioning: h * (1 + gamma(e)) + beta(e)."""
    def __init__(self, embed: int, channels: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed, 2 * channels)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        g = self.proj(e)
        gamma, beta = g.view(*g.shape, *([1] * (h.dim() - 2))).chunk(2, dim=1)  # (B, C, 1) or (B, C, 1, 1) each
        return h * (1 + gamma) + beta


class ResBlock(nn.Module):
    """Dilated residual block at full rate (HiFi-GAN MRF style) with FiLM conditioning."""
    def __init__(self, channels: int, kernel: int, dilation: int, embed: int) -> None:
        super().__init__()
        self.film = FiLM(embed, channels)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=(kernel - 1) // 2)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """h (B, C, T), or (B, C, 1, T) in channels-last memory (``conv_cl``: the same result, faster on a CPU)."""
        conv = (lambda m, x: m(x)) if h.dim() == 3 else conv_cl
        r = conv(self.conv1, F.leaky_relu(self.film(h, e), 0.2))
        return h + conv(self.conv2, F.leaky_relu(r, 0.2))


def conv_cl(m: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` for x (B, C, 1, T) held channels-last, as a 2D convolution with a 1 x k kernel: the same
    numbers, from the same weights, but oneDNN's channels-last kernels run small-channel 1D convolutions
    1-4x faster on a CPU than its (B, C, T) ones (measured on 2 cores: 16 channels at 1,024 samples 7.3 ms
    against 1.8 ms per batch of 64). The output is (B, C_out, 1, T_out), channels-last."""
    return F.conv2d(x, m.weight.unsqueeze(2), m.bias, stride=(1, m.stride[0]), padding=(0, m.padding[0]),
                    dilation=(1, m.dilation[0]))


def _subpixel_weight(m: nn.ConvTranspose1d) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The transposed convolution ``m`` (kernel 2u, stride u, padding p) as an ordinary 3-tap convolution to
    u x C_out channels, phase-major (channel r C_out + c is output channel c at samples q u + r): output sample
    q u + r is sum_j x[q + j - 1] W[:, :, (1 - j) u + r + p] over j = 0, 1, 2 (taps outside the kernel are 0)."""
    u, p, k = m.stride[0], m.padding[0], m.kernel_size[0]
    if k > 2 * u or p > u:  # pragma: no cover - the generator's layers are (2u, u, u // 2 + u % 2)
        raise ConfigError(f"sub-pixel form: transposed convolution kernel {k}, stride {u}, padding {p} not supported")
    w = m.weight  # (C_in, C_out, k)
    ci, co = w.shape[0], w.shape[1]
    span = 3 * u  # zero-padding on both sides, so every index below is a kernel tap or a zero
    idx = (1 - torch.arange(3, device=w.device)) * u + torch.arange(u, device=w.device).unsqueeze(-1) + p + span
    wp = F.pad(w, (span, span))[:, :, idx].permute(2, 1, 0, 3).reshape(u * co, ci, 1, 3)  # from (C_in, C_out, u, 3)
    return wp, (m.bias.repeat(u) if m.bias is not None else None)


def up_cl(m: nn.ConvTranspose1d, x: torch.Tensor) -> torch.Tensor:
    """``m(x)`` for x (B, C, 1, L) held channels-last, as a sub-pixel convolution (Shi et al. 2016): one 3-tap
    convolution to u x C_out channels at the input rate, whose channels-last result *is* the upsampled signal
    (B, C_out, 1, u L) channels-last, without a copy. Exactly the transposed convolution (tested), 3x faster on
    a CPU, because none of its products are with inserted zeros."""
    u, co = m.stride[0], m.weight.shape[1]
    pad_extra = m.output_padding[0] - u % 2  # 0 for the generator's layers: the output is exactly u L long
    if pad_extra:  # pragma: no cover - guarded like _subpixel_weight
        raise ConfigError("sub-pixel form: output_padding must be stride % 2")
    w, b = _subpixel_weight(m)
    out = F.conv2d(x, w, b, padding=(0, 1))  # (B, u C_out, 1, L) channels-last: memory (B, 1, L, u, C_out)
    bsz, length = out.shape[0], out.shape[-1]
    return out.permute(0, 2, 3, 1).reshape(bsz, 1, length * u, co).permute(0, 3, 1, 2)


class ClassEqualizer(nn.Module):
    """A learned zero-phase filter per class: the 'filter' of a source-filter generator.

    The network upstream makes the source (impacts, modulation, noise); this layer shapes its spectrum
    with per-class log-gains at ``n_fft // 2 + 1`` frequencies, turned into a Hann-windowed symmetric
    FIR of ``n_fft + 1`` taps. Like the transfer path from a bearing to the accelerometer, it is linear,
    and because its parameters are few and act directly on the spectrum it can take large steps.
    """
    def __init__(self, n_classes: int, n_fft: int = 256) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.log_gain = nn.Parameter(torch.zeros(n_classes, n_fft // 2 + 1))
        self.register_buffer("window", torch.hann_window(n_fft + 1, periodic=False), persistent=False)

    def kernels(self, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """FIR kernels (B, n_fft + 1) of the classes y; ``extra`` (B, n_fft // 2 + 1): per-segment log-gains added."""
        log_gain = self.log_gain[y].float() if extra is None else self.log_gain[y].float() + extra.float()
        h = torch.fft.irfft(torch.exp(log_gain), n=self.n_fft)  # (B, n_fft), zero-phase, circular
        half = self.n_fft // 2
        return torch.cat([h[:, -half:], h[:, : half + 1]], dim=1) * self.window  # (B, n_fft + 1), symmetric

    def forward(self, x: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, T) filtered by its class's FIR, zero-padded at both ends ('same' length): the linear
        convolution, computed by FFT in float32 (8x cheaper than the direct 257-tap convolution on a CPU; the
        kernel is symmetric, so convolution and PyTorch's correlation agree)."""
        t, half = x.shape[-1], self.n_fft // 2
        n = _fast_len(t + self.n_fft)
        k = torch.fft.rfft(self.kernels(y, extra), n=n).unsqueeze(1)  # (B, 1, F)
        out = torch.fft.irfft(torch.fft.rfft(x.float(), n=n) * k, n=n)[..., half: half + t]
        return out.to(x.dtype)

    def forward_direct(self, x: torch.Tensor, y: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """The same filter as a grouped direct convolution (the reference ``forward`` is tested against)."""
        b, c, t = x.shape
        k = self.kernels(y, extra).to(x.dtype).repeat_interleave(c, dim=0).unsqueeze(1)  # (B*C, 1, n_fft + 1)
        out = F.conv1d(x.reshape(1, b * c, t), k, padding=self.n_fft // 2, groups=b * c)
        return out.view(b, c, t)


def jitter_cell(cfg: ModelConfig, fs: float) -> int:
    """Samples per random impact gain of the impulse path: ``model.jitter_cell_ms`` at fs, at least one."""
    return max(1, int(round(cfg.jitter_cell_ms * fs / 1000.0)))


def impulse_taps(cfg: ModelConfig, fs: float) -> int:
    """The impulse path's kernel length in samples (``ModelConfig.impulse_length``), at most 4,096: config.check
    refuses longer where data.fs is given; where the rate comes from the files, impulse_ms is capped here."""
    return min(4096, cfg.impulse_length(fs))


def _fast_len(n: int) -> int:
    """The smallest 2^a, 3 x 2^a, 5 x 2^a or 9 x 2^a >= n: FFT sizes that pocketfft and cuFFT handle at full
    speed (measured on a 2-core CPU, 4,608 = 9 x 512 points take 0.7x the time of 4,374 = 2 x 3^7)."""
    best = 1 << max(n - 1, 0).bit_length()
    for m in (3, 5, 9):
        size = m
        while size < n:
            size *= 2
        best = min(best, size)
    return best


class ClassProjection(nn.Module):
    """A 1x1 convolution with its own weights per class: (B, C_in, T), y (B,) -> (B, C_out, T).

    Each class chooses which characteristic frequencies drive it and how (an inner-race fault is
    modulated at BPFI, an outer-race fault at BPFO, a healthy bearing by neither); zero-initialised.
    """
    def __init__(self, n_classes: int, c_in: int, c_out: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_classes, c_out, c_in))
        self.bias = nn.Parameter(torch.zeros(n_classes, c_out))

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (B, C_in, T) -> (B, C_out, T) (``ConvGenerator._phase_film`` is the fast body's form)."""
        return torch.baddbmm(self.bias[y].to(x.dtype).unsqueeze(-1), self.weight[y].to(x.dtype), x)  # bias fused


@torch.compiler.disable
def _impact_slots(count: torch.Tensor) -> int:
    """Impact slots per train for the most impacts in ``count``, rounded up to 16: torch.compile specialises
    on the number, so a few shapes serve every batch instead of one per batch (the slots past a train's
    count are masked out)."""
    m = max(int(count.max()), 1) if count.numel() else 1
    return -(-m // 16) * 16


@torch.compiler.disable
def _active_trains(mask: torch.Tensor, classes: torch.Tensor) -> torch.Tensor | None:
    """The impulse trains that some class in ``classes`` (the batch's class indices, repeats allowed) may use
    (``mask``: ``train_mask``, (classes, trains)), or None where that is every train. The others' kernels are
    zero through the mask, so their impacts add exactly nothing and need not be computed: with ``model.impulse_trains = "fault"`` a one-class batch (every
    sampling request) has one train of five. No train (a batch of healthy classes) keeps the first, masked to
    zero, so the path's parameters stay in the graph. An index tensor, not a list: torch.compile then sees
    only its length, and one-class batches of different classes share one compiled graph."""
    used = mask[classes].ne(0).any(0)
    if bool(used.all()):
        return None
    act = used.nonzero().flatten()
    return act if act.numel() else act.new_zeros(1)


#: the impulse train (index into ``characteristic_ratios``: fr, FTF, BPFO, BPFI, 2 x BSF) of each fault type
FAULT_TRAIN = {"outer": 2, "inner": 3, "ball": 4}


def train_mask(faults: list[str | None], n_trains: int = 5) -> torch.Tensor:
    """(classes, trains) 0/1: which impulse trains each class may use (``model.impulse_trains = "fault"``). A
    class of a known fault type gets its own train, a normal class none, and a class of unknown type (None or
    "other") all of them."""
    mask = torch.ones(len(faults), n_trains)
    for k, fault in enumerate(faults):
        if fault == "normal":
            mask[k] = 0
        elif fault in FAULT_TRAIN:
            mask[k] = 0
            mask[k, FAULT_TRAIN[fault]] = 1
    return mask


class ImpulsePath(nn.Module):
    """Deterministic impacts, the McFadden-Smith bearing model: at each characteristic frequency a train of
    unit impulses, each placed to a fraction of a sample (split linearly between its two neighbours),
    amplitude-modulated per class by the shaft and cage phases (load zone, ball spin) and by a per-segment
    and a per-impact random log-gain, then convolved with a learned per-class impulse response (the
    structure's ring-down, causal, ``taps`` long). Every impact of a segment has the same shape, as in a
    real fault signal, where the generator's noise-driven path gives each impact a random texture.
    The kernels start at zero, so the path is off until training grows it.
    """
    HARMONICS = 2  # modulation harmonics of the shaft and cage rates

    def __init__(self, n_classes: int, n_trains: int, out_channels: int, taps: int, cell: int = 1,
                 decay: float = 0.0, speed_exp: float = 0.0) -> None:
        super().__init__()
        self.taps, self.cell = taps, int(cell)
        # the kernels' ring-down prior: tap i weighted by exp(-i / decay) (decay in samples; 0: flat, as before)
        taper = torch.exp(-torch.arange(taps, dtype=torch.float32) / decay) if decay > 0 else torch.ones(taps)
        self.register_buffer("taper", taper, persistent=False)  # from the config, not part of the weights
        self.kernel = nn.Parameter(torch.zeros(n_classes, out_channels, n_trains, taps))
        self.mod = nn.Parameter(torch.zeros(n_classes, n_trains, 4 * self.HARMONICS))
        # log of the per-segment and per-impact log-gain standard deviations: (K, 2, trains)
        self.log_sigma = nn.Parameter(torch.full((n_classes, 2, n_trains), math.log(0.1)))
        # which trains each class may use (train_mask); ones: all, as models saved before it
        self.register_buffer("train_mask", torch.ones(n_classes, n_trains))
        # impact amplitude ~ (shaft rate / ref_hz) ** speed_exp per class (model.impulse_speed_exp; 0: as before)
        self.register_buffer("speed_exp", torch.full((n_classes,), float(speed_exp)))
        self.register_buffer("ref_hz", torch.ones(()))

    def forward(self, y: torch.Tensor, freq: torch.Tensor, phase0: torch.Tensor, seg: torch.Tensor,
                jitter: torch.Tensor, fs: float, length: int) -> torch.Tensor:
        """y (B,), freq (B, K) Hz, phase0 (B, K) rad, seg (B, K) and jitter (B, K, ceil((length + taps) / cell))
        standard normal -> (B, C, length). An impact between train samples j and j + 1 takes its own random
        log-gain from jitter cell j // cell: ``cell`` samples share one number (impacts of one train are further
        apart than a cell unless its frequency exceeds fs / cell)."""
        with torch.autocast(freq.device.type, enabled=False):  # phases and gains need float32 under AMP
            return self._forward(y, freq.float(), phase0.float(), seg.float(), jitter.float(), fs, length)

    def _forward(self, y: torch.Tensor, freq: torch.Tensor, phase0: torch.Tensor, seg: torch.Tensor,
                 jitter: torch.Tensor, fs: float, length: int) -> torch.Tensor:
        """``_forward_dense``'s output computed from the impacts alone: the phases, gains and sub-sample shares
        are evaluated at the ~f T / fs impacts of each train instead of at all of its samples (the same
        float64 formulas at the same grid points, so the result agrees to rounding), and the trains are
        filled by one scatter before the FFT convolution."""
        L = self.taps
        n = length + L - 1  # train samples; the phase lives on the grid i = 0..n+1, time (i - L) / fs
        f_all, c_all = freq.double(), phase0.double() / (2 * math.pi)  # (B, trains): u_i = f t_i + c cycles
        classes, inverse = torch.unique(y, return_inverse=True)  # the classes present, for the kernels below
        act = _active_trains(self.train_mask, classes)  # the trains to compute (None: all)
        if act is None:
            f64, c, mod, sig_idx = f_all, c_all, self.mod[y], slice(None)
        else:
            f64, c, mod, sig_idx = f_all[:, act], c_all[:, act], self.mod[y][:, act], act
            seg, jitter = seg[:, act], jitter[:, act]
        K = f64.shape[1]

        def cycles(f: torch.Tensor, c: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            return f * ((i - L) / fs) + c  # the dense grid's formula, at grid points i (float64)

        first = torch.floor(cycles(f64, c, f64.new_tensor(0.0)))  # (B, K)
        count = (torch.floor(cycles(f64, c, f64.new_tensor(float(n + 1)))) - first).long()  # impacts in the grid
        m_max = _impact_slots(count)
        idx = torch.arange(m_max, device=freq.device)
        valid = idx < count.unsqueeze(-1)  # (B, K, M)
        m = first.unsqueeze(-1) + 1 + idx.double()  # the integer cycle of each impact
        fe, ce = f64.unsqueeze(-1), c.unsqueeze(-1)
        # the first grid point at or past the impact: solved, then put right against the grid's own floors
        i = torch.ceil(L + (m - ce) * fs / fe.clamp(min=1e-12)).clamp(1, n + 1)
        i = i - (torch.floor(cycles(fe, ce, i - 1)) >= m).double()
        i = (i + (torch.floor(cycles(fe, ce, i)) < m).double()).clamp(1, n + 1)
        u1, u0 = cycles(fe, ce, i), cycles(fe, ce, i - 1)
        after = ((u1 - torch.floor(u1)) / (u1 - u0).clamp(min=1e-9)).clamp(0, 1).float()  # (B, K, M)
        j = (i - 1).long()  # the impact lies between grid points j and j + 1: dense index j
        # shaft (fr) and cage (FTF) phases at grid point j + 1, as the dense path evaluates them
        feats = []
        for train in (0, 1):
            ut = cycles(f_all[:, train, None, None], c_all[:, train, None, None], i).float()
            feats += [fn(2 * math.pi * h * ut) for h in range(1, self.HARMONICS + 1) for fn in (torch.cos, torch.sin)]
        log_amp = (torch.stack(feats, dim=-1) * mod.float().unsqueeze(2)).sum(-1)  # (B, K, M)
        sigma = torch.exp(self.log_sigma[y][:, :, sig_idx].float())  # (B, 2, K)
        jit = torch.gather(jitter, 2, (j.clamp(0, n) // self.cell).clamp(max=jitter.shape[-1] - 1))
        log_amp = log_amp + (sigma[:, 0] * seg + self._speed_gain(y, freq)).unsqueeze(-1) + sigma[:, 1].unsqueeze(-1) * jit
        w = torch.exp(log_amp) * valid
        # an impact `after` of a sample before train sample j: share 1 - after to j, after to j - 1
        to_j, to_prev = w * (1 - after) * (j < n), w * after * (j >= 1)
        b, nfft = freq.shape[0], _fast_len(n)
        # the trains at their FFT length already (zeros past n: no padding copy), with one slot more where
        # nfft == n, for the impacts clamped to index n, which are not part of the trains
        trains = torch.zeros(b, K, max(nfft, n + 1), device=freq.device, dtype=torch.float32)
        trains.scatter_add_(2, j.clamp(0, n), to_j)
        trains.scatter_add_(2, (j - 1).clamp(0, n), to_prev)
        trains[..., n] = 0
        return self._convolve(trains[..., :nfft], classes, inverse, length, n, act)

    def _speed_gain(self, y: torch.Tensor, freq: torch.Tensor) -> torch.Tensor:
        """(B, 1) log-amplitude of every impact of a segment from its shaft rate (freq[:, 0], Hz): speed_exp x
        log(rate / ref_hz); zero where speed_exp is (the default)."""
        rate = freq[:, 0].float().clamp(min=1e-6)
        return (self.speed_exp[y].float() * torch.log(rate / self.ref_hz.float())).unsqueeze(-1)

    def kernels(self, classes: torch.Tensor | None = None) -> torch.Tensor:
        """The impulse responses in use, (classes, C, trains, taps) float32: the learned kernels of ``classes``
        (all where None) through the train mask and the ring-down taper."""
        k, mask = (self.kernel, self.train_mask) if classes is None else (self.kernel[classes], self.train_mask[classes])
        return k.float() * mask[:, None, :, None] * self.taper

    def _convolve(self, trains: torch.Tensor, classes: torch.Tensor, inverse: torch.Tensor, length: int, n: int,
                  act: torch.Tensor | None = None) -> torch.Tensor:
        """Trains of n samples, zero-padded to at most their FFT length (B, K, <= _fast_len(n)), through each
        class's kernels, summed over the trains: (B, C, length), the samples L - 1 .. L - 2 + length of the
        linear convolution (an FFT of >= n points never wraps into them). ``classes, inverse``: ``torch.unique`` of
        the batch's classes, one kernel FFT per class present; ``act``: the trains given (None: all)."""
        L, nfft = self.taps, _fast_len(n)
        k = self.kernels(classes)
        kernels = torch.fft.rfft(k if act is None else k[:, :, act], nfft)  # (classes, C, K, F)
        if classes.numel() > 1:  # one class (a sampling request): broadcast, no (B, C, K, F) copy
            kernels = kernels[inverse]
        spec = (torch.fft.rfft(trains, nfft).unsqueeze(1) * kernels).sum(dim=2)  # (B, C, F)
        return torch.fft.irfft(spec, nfft)[..., L - 1: L - 1 + length]  # (B, C, length)

    def _forward_dense(self, y: torch.Tensor, freq: torch.Tensor, phase0: torch.Tensor, seg: torch.Tensor,
                 jitter: torch.Tensor, fs: float, length: int) -> torch.Tensor:
        """The definition, on every train sample (the reference ``_forward`` is tested against)."""
        L = self.taps
        # output samples 0..length-1 need train samples i = 0..n-1 (time (i - L + 1) / fs: from L - 1 samples
        # before the segment, whose impacts ring into it); train sample i takes its share of every impact
        # between samples i - 1 and i + 1, so the phase is evaluated at n + 2 times, one beyond each end
        n = length + L - 1
        jitter = jitter.repeat_interleave(self.cell, dim=-1) if self.cell > 1 else jitter  # one number per sample
        # float64 phase: in float32 an impact 50 cycles in is misplaced by ~1e-3 of a sample
        t = (torch.arange(n + 2, device=freq.device, dtype=torch.float64) - L) / fs
        u = freq.double().unsqueeze(-1) * t + phase0.double().unsqueeze(-1) / (2 * math.pi)  # (B, K, n + 2) cycles
        whole = torch.floor(u)
        cross = (whole[..., 1:] > whole[..., :-1]).float()  # (B, K, n + 1): j: an impact between i = j-1 and j
        after = ((u[..., 1:] - whole[..., 1:]) / (u[..., 1:] - u[..., :-1]).clamp(min=1e-9)).clamp(0, 1).float()
        u = u.float()
        feats = [f(2 * math.pi * h * u[:, j, 1:]) for j in (0, 1) for h in range(1, self.HARMONICS + 1)
                 for f in (torch.cos, torch.sin)]  # shaft (fr) and cage (FTF) phases: (B, n + 1) each
        log_amp = torch.bmm(self.mod[y].float(), torch.stack(feats, dim=1))  # (B, K, n + 1)
        sigma = torch.exp(self.log_sigma[y].float())  # (B, 2, K)
        log_amp = (log_amp + (sigma[:, 0] * seg + self._speed_gain(y, freq)).unsqueeze(-1)
                   + sigma[:, 1].unsqueeze(-1) * jitter[..., : n + 1])
        w = cross * torch.exp(log_amp)
        # an impact `after` of a sample before train sample j: share 1 - after to j, after to j - 1
        trains = (w * (1 - after))[..., :n] + (w * after)[..., 1:]  # (B, K, n)
        nfft = 1 << (n - 1).bit_length()  # >= n: the part kept below never wraps around
        kernels = torch.fft.rfft(self.kernels(), nfft)[y]  # one FFT per class, not per segment: (B, C, K, F)
        spec = torch.fft.rfft(trains, nfft).unsqueeze(1) * kernels
        return torch.fft.irfft(spec.sum(dim=2), nfft)[..., L - 1: L - 1 + length]  # (B, C, length)


class ConvGenerator(nn.Module):
    """Fully convolutional conditional generator for long vibration signals.

    Noise ``(B, noise_dim, T / prod(upsample))`` is upsampled by transposed convolutions, level by level,
    to the full rate; at each level dilated residual blocks with FiLM conditioning on (class embedding,
    rpm, load) shape the waveform. Optional *phase inputs* join at every level: sin, cos and a sharp
    periodic pulse (exp(8 (cos - 1))) of the phase of the shaft rate, FTF, BPFO, BPFI and 2 x BSF at the
    requested rpm, each with a random start phase and 1 % random speed slip. Through per-class weights
    they act as a time-varying FiLM, h * (1 + scale(t)) + shift(t): the multiplication is what lets a pulse train
    at BPFI *modulate* a resonance, i.e. impacts at the defect rate for any speed (physics-informed
    conditioning) instead of counting samples. A level only sees the inputs it can represent (below
    0.4 x its sample rate), so nothing aliases. Any length that is a
    multiple of ``prod(upsample)`` can be generated, longer than the training segments included.
    """
    def __init__(self, n_classes: int, out_channels: int, fs: float, cfg: ModelConfig, geometry: str = "6205") -> None:
        super().__init__()
        self.n_classes, self.out_channels, self.fs = n_classes, out_channels, float(fs)
        self.noise_dim, self.noise = cfg.noise_dim, cfg.noise
        self.hop, self.out_upsample = cfg.hop, int(cfg.out_upsample)
        self.phase_inputs = cfg.phase_inputs
        self.register_buffer("ratios", torch.tensor(characteristic_ratios(geometry), dtype=torch.float32))
        n_phase = 3 * len(self.ratios)
        embed = cfg.embed_dim + 2
        k = cfg.kernel
        self.class_embed = nn.Embedding(n_classes, cfg.embed_dim)
        self.inp = nn.Conv1d(cfg.noise_dim, cfg.widths[0], k, padding=k // 2)
        self.ups = nn.ModuleList()
        self.phase_proj = nn.ModuleList()
        self.blocks = nn.ModuleList()
        self.strides = [1, *cfg.upsample]
        for level, width in enumerate(cfg.widths):
            if level:
                u, prev = cfg.upsample[level - 1], cfg.widths[level - 1]
                self.ups.append(nn.Sequential(
                    nn.ConvTranspose1d(prev, width, 2 * u, stride=u, padding=u // 2 + u % 2, output_padding=u % 2),
                    nn.LeakyReLU(0.2),
                    nn.Conv1d(width, width, k, padding=k // 2),
                ))
            if self.phase_inputs:  # per class: phase inputs -> (scale, shift); zero: starts as the identity
                self.phase_proj.append(ClassProjection(n_classes, n_phase, 2 * width))
            self.blocks.append(nn.ModuleList(
                ResBlock(width, k, 3 ** (i % 4), embed) for i in range(cfg.res_blocks[level])
            ))
        if cfg.out_upsample > 1:  # the last level runs at 1/u of the full rate; a transposed convolution finishes
            u = cfg.out_upsample
            self.out = nn.ConvTranspose1d(cfg.widths[-1], out_channels, 2 * u, stride=u, padding=u // 2 + u % 2,
                                          output_padding=u % 2)
        else:
            self.out = nn.Conv1d(cfg.widths[-1], out_channels, k, padding=k // 2)
        self.eq = ClassEqualizer(n_classes, cfg.eq_fft) if cfg.equalizer else None
        taps = impulse_taps(cfg, fs)
        self.impulse = ImpulsePath(n_classes, len(self.ratios), out_channels, taps, jitter_cell(cfg, fs),
                                   cfg.impulse_decay_ms * fs / 1000.0, cfg.impulse_speed_exp) if taps else None
        # per-level noise injection (StyleGAN): fresh randomness at every rate, so segments vary like real ones
        self.noise_gain = nn.ParameterList(nn.Parameter(torch.full((1, w, 1), 0.1)) for w in cfg.widths)
        self.variety = bool(cfg.variety) and self.eq is not None
        self.reference_body = False  # True: the body as (B, W, T) tensors through the modules (slower, same numbers)
        if self.variety:  # identity until vibgan.calibrate.calibrate_variety fits them to the real training windows
            # per class: a temperature on every noise input, a scale of the random speed slip (how much the speed
            # wanders from segment to segment), and the log-amplitude gain per unit of the segment's own random
            # number (the last latent) at the equaliser's frequencies; with an impulse path, its gain
            self.register_buffer("temperature", torch.ones(n_classes))
            self.register_buffer("slip_scale", torch.ones(n_classes))
            self.register_buffer("segment_mode", torch.zeros(n_classes, cfg.eq_fft // 2 + 1))
            if self.impulse is not None:  # the deterministic impacts against the noise-driven path
                self.register_buffer("impulse_gain", torch.ones(n_classes))

    def parameter_groups(self, lr: float, *, lr_eq: float, lr_phase: float, lr_impulse: float) -> list[dict]:
        """Optimiser parameter groups: the body at ``lr``; the equaliser's few log-gains, the per-class phase
        projections and the impulse path are well conditioned and take larger steps, each at its own rate."""
        parts = [(self.eq, lr_eq), (self.phase_proj if self.phase_inputs else None, lr_phase), (self.impulse, lr_impulse)]
        own = [(list(m.parameters()), rate) for m, rate in parts if m is not None]
        own = [(ps, rate) for ps, rate in own if ps]
        ids = {id(p) for ps, _ in own for p in ps}
        return [{"params": [p for p in self.parameters() if id(p) not in ids], "lr": lr}] + \
            [{"params": ps, "lr": rate} for ps, rate in own]

    def sample_latent(self, n: int, length: int, generator: torch.Generator | None = None,
                      device: torch.device | str = "cpu", cond: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        if length % self.hop:
            raise ConfigError(f"conv generator: length must be a multiple of {self.hop} samples, got {length}")
        shape = (n, self.noise_dim, length // self.hop)
        if self.noise == "uniform":
            z = torch.rand(shape, generator=generator, device=device) * 2 - 1
        else:
            z = torch.randn(shape, generator=generator, device=device)
        k = len(self.ratios)
        phase0 = torch.rand(n, k, generator=generator, device=device) * (2 * math.pi)
        slip = 1.0 + 0.01 * torch.randn(n, k, generator=generator, device=device)
        # noise at the last level's rate, the full rate unless the output layer upsamples: (B, 1, T / out_upsample)
        fine = torch.randn(n, 1, length // self.out_upsample, generator=generator, device=device)
        latent = (z, phase0, slip, fine)
        if self.impulse is not None:
            seg = torch.randn(n, k, generator=generator, device=device)  # per-segment impact gains
            cells = -(-(length + self.impulse.taps) // self.impulse.cell)
            jitter = torch.randn(n, k, cells, generator=generator, device=device)  # per impact
            latent = (*latent, seg, jitter)
        if self.variety:  # drawn last, so the other inputs of a seed are those of a generator without it
            latent = (*latent, torch.randn(n, generator=generator, device=device))  # the segment's spectral gain
        return latent

    def characteristic_freqs(self, cond: torch.Tensor, slip: torch.Tensor) -> torch.Tensor:
        """(B, K) Hz: fr, FTF, BPFO, BPFI and 2 x BSF at each segment's rpm, times its random slip."""
        return (cond[:, :1].float() / 60.0) * self.ratios * slip

    def phase_features(self, cond: torch.Tensor, phase0: torch.Tensor, slip: torch.Tensor, length: int,
                       step: int = 1) -> torch.Tensor:
        """sin, cos and a periodic pulse of the characteristic phases at every ``step``-th sample:
        (B, 3K, length) for shaft rate rpm/60; inputs at or above 0.4 x the level's rate are zero (no aliasing).
        ``_phase_film`` is the fast body's form of these features and their projection."""
        sin, cos, pulse, ok = self._phase_parts(cond, phase0, slip, length, step, time_dim=2)
        ok = ok.unsqueeze(-1)  # (B, K, 1)
        return torch.cat([sin * ok, cos * ok, pulse * ok], dim=1)

    def _phase_parts(self, cond: torch.Tensor, phase0: torch.Tensor, slip: torch.Tensor, length: int, step: int,
                     time_dim: int) -> tuple[torch.Tensor, ...]:
        """sin, cos and the zero-mean pulse of the characteristic phases, unmasked, with time on ``time_dim``
        ((B, K, T) for 2, (B, T, K) for 1), and ok (B, K): 1 where a frequency is below 0.4 x the level's rate."""
        t = torch.arange(length, device=cond.device, dtype=torch.float32) * (step / self.fs)  # (T_level,) s
        freq = self.characteristic_freqs(cond, slip)  # (B, K)
        ok = (freq * step < 0.4 * self.fs).float()  # (B, K) representable at this level
        if time_dim == 1:
            phase = 2 * math.pi * freq.unsqueeze(1) * t.unsqueeze(-1) + phase0.unsqueeze(1)  # (B, T, K)
        else:
            phase = 2 * math.pi * freq.unsqueeze(-1) * t + phase0.unsqueeze(-1)  # (B, K, T)
        cos = torch.cos(phase)
        pulse = torch.exp(8.0 * (cos - 1.0))  # narrow bump once per period: harmonics, like impacts
        return torch.sin(phase), cos, pulse - pulse.mean(time_dim, keepdim=True), ok

    def _phase_film(self, level: int, cond: torch.Tensor, phase0: torch.Tensor, slip: torch.Tensor, y: torch.Tensor,
                    length: int, step: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """The phase FiLM of a level of ``_body``: (1 + scale, shift), each (B, W, 1, length) in channels-last
        memory; ``phase_features`` through ``phase_proj[level]``, reordered so that the time axis sees as few
        passes as possible. The features are computed time-major, (B, T, 3K) plus a column of ones, without their
        masks: those are per segment and per feature, so they are folded into the segment's weights (a masked
        feature's weights are zero), and the bias with the 1 of "1 + scale" is the weight of the ones column.
        One batched product then gives both, already laid out as (B, 2W, 1, T) channels-last. The same numbers
        to float32 rounding (tested)."""
        # the pulse's mean is taken off in the features, not through the bias: no cancellation in the gradients
        sin, cos, pulse, ok = self._phase_parts(cond, phase0, slip, length, step, time_dim=1)
        feats = torch.cat([sin, cos, pulse, torch.ones_like(cos[..., :1])], dim=2)  # (B, T, 3K + 1)
        proj = self.phase_proj[level]
        width = proj.bias.shape[1] // 2
        wt = proj.weight[y].transpose(1, 2).float() * ok.repeat(1, 3).unsqueeze(-1)  # (B, 3K, 2W)
        one = torch.cat([cos.new_ones(width), cos.new_zeros(width)])  # the 1 of 1 + scale
        w = torch.cat([wt, (proj.bias[y].float() + one).unsqueeze(1)], dim=1).to(dtype)
        out = torch.bmm(feats.to(dtype), w).transpose(1, 2).unsqueeze(2)  # (B, T, 2W) as (B, 2W, 1, T)
        return out.chunk(2, dim=1)

    def forward(self, latent: tuple[torch.Tensor, ...], y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.finish(*self.sources(latent, y, cond), latent, y)

    def sources(self, latent: tuple[torch.Tensor, ...], y: torch.Tensor, cond: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's output and the impulse path's impacts before their gain and the equaliser:
        ((B, C, T), (B, C, T) or None). They depend on the temperature and slip knobs, not on the impulse gain,
        the segment gain or the equaliser, so calibration can reuse them (``finish`` does the rest)."""
        x, slip, tau = self.body_output(latent, y, cond)
        if self.impulse is None:
            return x, None
        phase0 = latent[1]
        freq = self.characteristic_freqs(cond, slip)  # the phase inputs' frequencies and start phases
        seg, jitter = latent[4], latent[5]
        if self.variety:
            seg, jitter = seg * tau[:, 0], jitter * tau
        return x, self.impulse(y, freq, phase0, seg, jitter, self.fs, x.shape[-1]).to(x.dtype)

    def body_output(self, latent: tuple[torch.Tensor, ...], y: torch.Tensor, cond: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The convolutional body's output (B, C, T) in normalised units, before the impacts and the equaliser
        (what ``vibgan.distill`` teaches a student), with the slip and temperature it used ((B, K), (B, 1, 1) or
        None without the variety knobs)."""
        z, phase0, slip, fine = latent[:4]
        tau = None
        if self.variety:
            tau = self.temperature[y].to(z.dtype).view(-1, 1, 1)  # (B, 1, 1)
            z, fine = z * tau, fine * tau
            slip = 1 + (slip - 1) * self.slip_scale[y].to(slip.dtype).unsqueeze(-1)
        e = torch.cat([self.class_embed(y), _cond_features(cond).to(z.dtype)], dim=1)  # (B, E)
        body = self._body_1d if self.reference_body else self._body
        return body(z, fine, e, y, cond, phase0, slip), slip, tau

    def _body(self, z: torch.Tensor, fine: torch.Tensor, e: torch.Tensor, y: torch.Tensor, cond: torch.Tensor,
              phase0: torch.Tensor, slip: torch.Tensor) -> torch.Tensor:
        """The convolutional body, every level held as (B, W, 1, T) in channels-last memory: ``_body_1d``'s
        numbers from the same weights (tested), with 2D convolutions of 1 x k kernels (``conv_cl``) and the
        transposed convolutions in sub-pixel form (``up_cl``), 2x faster on a CPU. -> (B, C, T) contiguous."""
        cl = torch.channels_last
        h = F.leaky_relu(conv_cl(self.inp, z.unsqueeze(2).contiguous(memory_format=cl)), 0.2)  # (B, W0, 1, T/hop)
        fine = fine.unsqueeze(2)  # (B, 1, 1, T / out_upsample)
        step = self.hop  # in full-rate samples; the last level is at out_upsample
        for level, blocks in enumerate(self.blocks):
            if level:
                step //= self.strides[level]
                up = self.ups[level - 1]
                h = conv_cl(up[2], F.leaky_relu(up_cl(up[0], h), up[1].negative_slope))
                h = F.leaky_relu(h, 0.2)  # (B, W_level, 1, T/step)
            noise = fine[..., :: step // self.out_upsample][..., : h.shape[-1]].to(h.dtype)
            h = torch.addcmul(h, self.noise_gain[level].unsqueeze(-1).to(h.dtype), noise)
            if self.phase_inputs:  # h (1 + scale) + shift
                scale1, shift = self._phase_film(level, cond, phase0, slip, y, h.shape[-1], step, h.dtype)
                h = torch.addcmul(shift, h, scale1)
            for block in blocks:
                h = block(h, e)
        h = F.leaky_relu(h, 0.2)
        x = up_cl(self.out, h) if isinstance(self.out, nn.ConvTranspose1d) else conv_cl(self.out, h)
        return x.squeeze(2).contiguous()

    def _body_1d(self, z: torch.Tensor, fine: torch.Tensor, e: torch.Tensor, y: torch.Tensor, cond: torch.Tensor,
                 phase0: torch.Tensor, slip: torch.Tensor) -> torch.Tensor:
        """The body as defined, on (B, W, T) tensors through the modules themselves (``_body`` is tested
        against it; ``reference_body = True`` runs it)."""
        h = F.leaky_relu(self.inp(z), 0.2)  # (B, W0, T/hop)
        step = self.hop
        for level, blocks in enumerate(self.blocks):
            if level:
                step //= self.strides[level]
                h = F.leaky_relu(self.ups[level - 1](h), 0.2)  # (B, W_level, T/step)
            h = h + self.noise_gain[level] * fine[..., :: step // self.out_upsample][..., : h.shape[-1]].to(h.dtype)
            if self.phase_inputs:
                ph = self.phase_features(cond, phase0, slip, h.shape[-1], step).to(h.dtype)
                scale, shift = self.phase_proj[level](ph, y).chunk(2, dim=1)
                h = h * (1 + scale) + shift
            for block in blocks:
                h = block(h, e)
        return self.out(F.leaky_relu(h, 0.2))

    def finish(self, x: torch.Tensor, imp: torch.Tensor | None, latent: tuple[torch.Tensor, ...],
               y: torch.Tensor) -> torch.Tensor:
        """``sources``' outputs -> the generator's output: impacts at their gain added, then the equaliser."""
        if imp is not None:
            if self.variety:
                imp = imp * self.impulse_gain[y].to(x.dtype).view(-1, 1, 1)
            x = x + imp
        if self.eq is None:
            return x
        extra = self.segment_mode[y] * latent[-1].unsqueeze(-1) if self.variety else None  # (B, F) log-amplitude
        return self.eq(x, y, extra)


class ScaleDiscriminator(nn.Module):
    """One scale of the multi-scale discriminator: strided 1D convolutions to patch logits, plus a
    projection term <embed(class, cond), h> (Miyato & Koyama) so it judges realism *for that class*."""
    def __init__(self, in_channels: int, width: int, n_classes: int, sn: bool) -> None:
        super().__init__()
        wrap = _sn if sn else (lambda m: m)
        w = [width, 2 * width, 4 * width, 4 * width]
        self.convs = nn.ModuleList([
            wrap(nn.Conv1d(in_channels, w[0], 15, padding=7)),
            wrap(nn.Conv1d(w[0], w[1], 9, stride=4, padding=4)),
            wrap(nn.Conv1d(w[1], w[2], 9, stride=4, padding=4)),
            wrap(nn.Conv1d(w[2], w[3], 9, stride=4, padding=4)),
            wrap(nn.Conv1d(w[3], w[3], 5, padding=2)),
        ])
        self.out = wrap(nn.Conv1d(w[3], 1, 3, padding=1))
        self.embed = wrap(nn.Embedding(n_classes, w[3]))
        self.cond = wrap(nn.Linear(2, w[3]))

    def forward(self, x: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)  # -> (B, 4w, T/64)
        proj = self.embed(y) + self.cond(_cond_features(cond).to(h.dtype))  # (B, 4w)
        return self.out(h) + (h * proj.unsqueeze(-1)).sum(dim=1, keepdim=True) / math.sqrt(h.shape[1])


class MultiScaleDiscriminator(nn.Module):
    """Discriminators on the signal and on 2x, 4x ... average-pooled copies (HiFi-GAN's MSD)."""
    def __init__(self, in_channels: int, n_classes: int, cfg: ModelConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            ScaleDiscriminator(in_channels, cfg.d_channels, n_classes, cfg.spectral_norm) for _ in range(cfg.d_scales)
        )

    def forward(self, x: torch.Tensor, y: torch.Tensor, cond: torch.Tensor) -> list[torch.Tensor]:
        logits = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool1d(x, 4, 2, padding=1)
            logits.append(d(x, y, cond))  # (B, 1, T_i)
        return logits


def build_models(cfg: ModelConfig, *, n_classes: int, channels: int, length: int, fs: float,
                 geometry: str = "6205", faults: list[str | None] | None = None,
                 ref_rpm: float | None = None) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator for a model config, the number of classes, channels and segment length;
    ``faults`` (each class's fault type, None where unknown) sets the impulse path's trains where
    ``cfg.impulse_trains`` is "fault"; ``ref_rpm`` (the training data's mean speed) is the speed at which
    ``cfg.impulse_speed_exp`` leaves the impacts' amplitude as it is (None: from the weights, or 60 rpm)."""
    if cfg.kind == "mlp":
        g = MLPGenerator(cfg.noise_dim, cfg.hidden, channels, length, n_classes, cfg.out_activation, cfg.noise)
        d = MLPDiscriminator(channels, length, cfg.d_hidden, n_classes, cfg.d_dropout)
    elif cfg.kind == "conv1d":
        g = ConvGenerator(n_classes, channels, fs, cfg, geometry)
        if g.impulse is not None and cfg.impulse_trains == "fault" and faults is not None:  # None: from the weights
            if len(faults) != n_classes:
                raise ConfigError(f"model.impulse_trains = 'fault': needs each of the {n_classes} classes' fault type, "
                                  f"got {faults!r}")
            g.impulse.train_mask.copy_(train_mask(faults, len(g.ratios)))
        if g.impulse is not None and ref_rpm is not None and ref_rpm > 0:
            g.impulse.ref_hz.fill_(ref_rpm / 60.0)
        d = MultiScaleDiscriminator(channels, n_classes, cfg)
    else:  # pragma: no cover - config.check refuses it first
        raise ConfigError(f"model.kind: unknown kind {cfg.kind!r}")
    return g, d


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


#: knobs added after models were saved, with their identity value: loaded at it where saved weights lack them
OPTIONAL_BUFFERS = {"impulse_gain": 1.0, "impulse.train_mask": 1.0, "impulse.speed_exp": 0.0, "impulse.ref_hz": 1.0}


def with_optional_buffers(module: nn.Module, weights: dict) -> dict:
    """``weights`` plus the identity value of each knob of ``module`` that they predate (``OPTIONAL_BUFFERS``)."""
    own = module.state_dict()
    return {**{k: torch.full_like(own[k], v) for k, v in OPTIONAL_BUFFERS.items() if k in own and k not in weights},
            **weights}
