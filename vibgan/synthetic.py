"""Synthetic sources: the seed GAN's toy sinusoids and a physics-based bearing vibration simulator.

``simulate_bearing`` builds an accelerometer signal in g from the mechanics of a localised bearing defect
(McFadden & Smith 1984; Randall & Antoni, MSSP 2011):

- every time a rolling element meets the defect it strikes it; strikes come at the characteristic
  frequency (BPFO outer race, BPFI inner race, 2 x BSF ball: a ball defect meets both races once per
  spin) with 1-2 % random slip, accumulated from strike to strike as in a real bearing;
- each strike rings the structure's damped resonances in the kHz range (drive end 3.4 and 2.8 kHz by
  default, the band where the CWRU drive-end fault data carry their energy; damping ratio 0.035-0.04, whose
  envelope decay, measured like the CWRU strikes', falls in their 1.6-3.5 ms range);
- the strikes are amplitude-modulated by the load zone: an inner-race defect turns through it at the
  shaft rate fr, a ball defect at the cage rate FTF; an outer-race defect sits in it (CWRU: 6 o'clock)
  and is not modulated;
- motor load presses the rolling elements harder into the races: the strikes grow (x (1 + 0.10 load_hp)),
  the structure's resonances are damped more (damping ratio x (1 + 0.08 load_hp): the stiffer, loaded contact
  couples the races to the housing) and the load zone widens; at 0 hp nothing changes, so the 0 hp defaults
  keep their CWRU-matched levels;
- the rotor adds shaft harmonics (1x, 2x, 3x fr: imbalance and misalignment) and the machine a coloured
  Gaussian background (a rotor band around 150 Hz, a frame mode near 1.1 kHz, a floor 20-35 dB lower below
  30 Hz and in 2.5-5 kHz: within about 5 dB of the CWRU normal recording's band powers), then the
  acquisition's anti-alias filter rolls everything off above 0.45 fs.

``severity`` scales the strike amplitude against the fixed background, so kurtosis and RMS rise with it
(severity 1: kurtosis about 5.5 inner, 7.5 outer, like CWRU's 0.007 in faults; RMS about 0.1 g, below
CWRU's fault recordings, whose ringing dominates a louder background than their normal recording's).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import signal as sps

from vibgan.bearing import FAULTS, BearingGeometry, characteristic_frequency, fault_frequencies
from vibgan.bearing import geometry as _geometry
from vibgan.errors import VibganError
from vibgan.recordings import Recording

# ---------------------------------------------------------------------------------------------------------
# The seed distribution: y = sin(b x + c)
# ---------------------------------------------------------------------------------------------------------


def _check_range(name: str, r: Sequence[float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in r)
    except (TypeError, ValueError):
        raise VibganError(f"{name}: expected a pair (low, high), got {r!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise VibganError(f"{name}: expected finite low <= high, got {r!r}")
    return lo, hi


def sinusoids(n: int, length: int = 64, seed: int | None = None, *, b_range: tuple[float, float] = (0.5, 2.0),
              c_range: tuple[float, float] = (0.0, math.pi), x_range: tuple[float, float] = (-5.0, 5.0),
              return_params: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The seed GAN's training distribution: rows y = sin(b x + c) on x = linspace(-5, 5, length).

    Parameters
    ----------
    n : number of curves.
    length : samples per curve.
    seed : random seed (None: fresh entropy).
    b_range : b ~ U(b_range), angular frequency in rad per unit of x.
    c_range : c ~ U(c_range), phase in rad.
    x_range : the x interval the curve is sampled on.
    return_params : also return b and c, each (n,).

    Returns
    -------
    y : float32 (n, length); with ``return_params``, (y, b, c).
    """
    if int(n) != n or n < 1:
        raise VibganError(f"sinusoids: n must be a positive integer, got {n!r}")
    if int(length) != length or length < 2:
        raise VibganError(f"sinusoids: length must be an integer >= 2, got {length!r}")
    b_lo, b_hi = _check_range("sinusoids: b_range", b_range)
    c_lo, c_hi = _check_range("sinusoids: c_range", c_range)
    x_lo, x_hi = _check_range("sinusoids: x_range", x_range)
    rng = np.random.default_rng(seed)
    b = rng.uniform(b_lo, b_hi, int(n))
    c = rng.uniform(c_lo, c_hi, int(n))
    x = np.linspace(x_lo, x_hi, int(length))
    y = np.sin(b[:, None] * x[None, :] + c[:, None]).astype(np.float32)
    return (y, b, c) if return_params else y


class SinusoidFit(NamedTuple):
    """Best fit of exactly sin(b x + c) (amplitude 1) per row; arrays (n,) or scalars for one curve.

    b : rad per unit x, within the searched range. c : phase in rad, in [0, 2 pi).
    amplitude : the free-amplitude least-squares amplitude at that b (informative; the residual does not use it).
    residual_rms : RMS of y - sin(b x + c): < 0.1 is a clean seed-distribution sinusoid.
    """
    b: np.ndarray
    c: np.ndarray
    amplitude: np.ndarray
    residual_rms: np.ndarray


def fit_sinusoid(y: np.ndarray, x: np.ndarray | None = None, b_range: tuple[float, float] = (0.5, 2.0), *,
                 n_grid: int = 301, iterations: int = 20) -> SinusoidFit:
    """Least-squares fit of sin(b x + c), amplitude fixed at 1, b in ``b_range``, any phase c; vectorised over rows.

    A grid over b with a linear sin/cos least-squares fit for the phase finds the basin; Gauss-Newton on
    (b, c) with the amplitude held at 1 then refines it (b clamped to the range).

    Parameters
    ----------
    y : curves (length,) or (n, length).
    x : sample positions (length,), default linspace(-5, 5, length) as in ``sinusoids``.
    b_range : the allowed b, rad per unit x.
    n_grid : b grid points for the initial search.
    iterations : Gauss-Newton steps.
    """
    y = np.asarray(y, dtype=np.float64)
    single = y.ndim == 1
    if single:
        y = y[None, :]
    if y.ndim != 2 or y.shape[-1] < 3:
        raise VibganError(f"fit_sinusoid: y: expected shape (length,) or (n, length) with length >= 3, got {y.shape}")
    if not np.isfinite(y).all():
        raise VibganError("fit_sinusoid: y: expected finite values, found NaN/Inf")
    length = y.shape[-1]
    x = np.linspace(-5.0, 5.0, length) if x is None else np.asarray(x, dtype=np.float64)
    if x.shape != (length,):
        raise VibganError(f"fit_sinusoid: x: expected shape ({length},), got {x.shape}")
    b_lo, b_hi = _check_range("fit_sinusoid: b_range", b_range)

    # 1) grid over b; for each b the free-amplitude phase from a 2x2 least squares on sin(bx), cos(bx).
    bg = np.linspace(b_lo, b_hi, max(int(n_grid), 2) if b_hi > b_lo else 1)
    s, co = np.sin(bg[:, None] * x), np.cos(bg[:, None] * x)                      # (B, L)
    gss, gcc, gsc = (s * s).sum(-1), (co * co).sum(-1), (s * co).sum(-1)           # (B,)
    ys, yc = y @ s.T, y @ co.T                                                     # (n, B)
    det = np.where(np.abs(gss * gcc - gsc**2) > 1e-12, gss * gcc - gsc**2, 1e-12)
    alpha = (gcc * ys - gsc * yc) / det                                            # coefficient of sin(bx) = cos c
    beta = (gss * yc - gsc * ys) / det                                             # coefficient of cos(bx) = sin c
    c = np.arctan2(beta, alpha)
    cc, sc = np.cos(c), np.sin(c)
    # residual of the amplitude-1 curve at that phase: |y|^2 - 2 <y, sin(bx + c)> + |sin(bx + c)|^2
    sq = (y * y).sum(-1, keepdims=True) - 2 * (cc * ys + sc * yc) + cc**2 * gss + 2 * cc * sc * gsc + sc**2 * gcc
    best = np.argmin(sq, axis=-1)
    rows = np.arange(y.shape[0])
    b_hat, c_hat = bg[best].copy(), c[rows, best].copy()

    # 2) Gauss-Newton on r = y - sin(b x + c), parameters (b, c), amplitude fixed at 1.
    for _ in range(int(iterations)):
        ph = b_hat[:, None] * x + c_hat[:, None]
        r = y - np.sin(ph)
        jc = np.cos(ph)                      # d sin / dc
        jb = jc * x                          # d sin / db
        a11, a12, a22 = (jb * jb).sum(-1), (jb * jc).sum(-1), (jc * jc).sum(-1)
        g1, g2 = (jb * r).sum(-1), (jc * r).sum(-1)
        d = a11 * a22 - a12**2
        ok = np.abs(d) > 1e-12
        d = np.where(ok, d, 1.0)
        db = np.where(ok, (a22 * g1 - a12 * g2) / d, 0.0)
        dc = np.where(ok, (a11 * g2 - a12 * g1) / d, 0.0)
        old = ((y - np.sin(b_hat[:, None] * x + c_hat[:, None])) ** 2).sum(-1)
        nb, nc = np.clip(b_hat + db, b_lo, b_hi), c_hat + dc
        new = ((y - np.sin(nb[:, None] * x + nc[:, None])) ** 2).sum(-1)
        better = new <= old                  # accept only improving steps: never worse than the grid
        b_hat, c_hat = np.where(better, nb, b_hat), np.where(better, nc, c_hat)

    res = np.sqrt(np.mean((y - np.sin(b_hat[:, None] * x + c_hat[:, None])) ** 2, axis=-1))
    sb, cb = np.sin(b_hat[:, None] * x), np.cos(b_hat[:, None] * x)
    g = np.stack([np.stack([(sb * sb).sum(-1), (sb * cb).sum(-1)], -1),
                  np.stack([(sb * cb).sum(-1), (cb * cb).sum(-1)], -1)], -2)       # (n, 2, 2)
    rhs = np.stack([(sb * y).sum(-1), (cb * y).sum(-1)], -1)                       # (n, 2)
    coef = np.linalg.solve(g + 1e-12 * np.eye(2), rhs[..., None])[..., 0]
    amp = np.hypot(coef[:, 0], coef[:, 1])
    c_hat = np.mod(c_hat, 2 * np.pi)
    if single:
        return SinusoidFit(float(b_hat[0]), float(c_hat[0]), float(amp[0]), float(res[0]))
    return SinusoidFit(b_hat, c_hat, amp, res)


# ---------------------------------------------------------------------------------------------------------
# Physics: localised bearing defects
# ---------------------------------------------------------------------------------------------------------

#: Reference speed of the default levels (CWRU 0 hp).
REFERENCE_RPM = 1797.0
#: Default RMS of the broadband background in g (CWRU normal baseline: 0.074 g RMS).
DEFAULT_NOISE_G = 0.07
#: Peak acceleration in g of one strike at severity 1 and REFERENCE_RPM, before load-zone modulation.
STRIKE_G = {"inner": 0.30, "outer": 0.34, "ball": 0.27}
#: Default structural modes (frequency Hz, damping ratio, weight) seen by the drive-end and fan-end sensors.
DE_MODES = ((3400.0, 0.035, 1.0), (2800.0, 0.04, 0.6))
FE_MODES = ((2500.0, 0.04, 1.0), (4100.0, 0.035, 0.5))
#: Damping ratio of modes given by frequency only (``resonance_hz``); CWRU strikes suggest 0.015-0.03, a
#: little more damping leaves room for kurtosis to grow with severity.
DEFAULT_DAMPING = 0.035
#: Standard deviation of one inter-strike interval, as a fraction of the mean interval (slip).
DEFAULT_SLIP = 0.015
#: Shaft harmonics 1x, 2x, 3x in g at REFERENCE_RPM (CWRU normal DE: 3.5, 3.2, 17 mg; kept small here).
SHAFT_HARMONICS_G = (0.006, 0.003, 0.004)
#: Fan-end channel: strike gain relative to the drive end (further from the defect) and its background.
FE_STRIKE_GAIN = 0.35
FE_NOISE_GAIN = 0.8
#: Per-strike amplitude scatter (coefficient of variation); ball defects roll in and out of contact.
STRIKE_SCATTER = {"inner": 0.1, "outer": 0.1, "ball": 0.25}
#: Of a ball defect's two strikes per spin, the inner-race one reaches the sensor weaker.
BALL_INNER_STRIKE = 0.6
#: Load effect per hp of motor load: relative growth of the strike amplitude and of the modes' damping ratio.
#: Physically motivated priors (a harder contact strikes harder and couples the races to the housing), not
#: fitted to a data set; at 3 hp a strike is 30 % stronger and its ringing decays 24 % faster.
LOAD_STRIKE_PER_HP = 0.10
LOAD_DAMPING_PER_HP = 0.08


def _modes(resonance_hz: float | Sequence[float] | None, default: tuple) -> tuple[tuple[float, float, float], ...]:
    if resonance_hz is None:
        return default
    freqs = [resonance_hz] if np.isscalar(resonance_hz) else list(resonance_hz)
    if not freqs:
        raise VibganError("simulate_bearing: resonance_hz: expected one or more frequencies in Hz, got none")
    out = []
    for i, f in enumerate(freqs):
        try:
            f = float(f)
        except (TypeError, ValueError):
            raise VibganError(f"simulate_bearing: resonance_hz: expected frequencies in Hz, got {resonance_hz!r}") from None
        if not math.isfinite(f) or f <= 0:
            raise VibganError(f"simulate_bearing: resonance_hz: expected positive frequencies in Hz, got {resonance_hz!r}")
        out.append((f, DEFAULT_DAMPING, 1.0 if i == 0 else 0.6))
    return tuple(out)


def _load_zone(theta: np.ndarray, load_hp: float) -> np.ndarray:
    """Strike gain of a defect at angle theta (rad) from the load direction: 1 at the centre, a floor opposite.

    A raised cosine, so the modulation is close to one harmonic of the rotation (sidebands at +/- 1 x the
    modulating rate dominate); more load widens the zone (raises the floor).
    """
    floor = min(0.25 + 0.05 * max(load_hp, 0.0), 0.6)
    return floor + (1.0 - floor) * 0.5 * (1.0 + np.cos(theta))


def _strike_train(fault: str, rate: float, freqs: dict[str, float], duration: float, severity: float,
                  rpm: float, load_hp: float, slip: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Strike times (s) and peak amplitudes (g) of a defect over ``duration`` seconds."""
    period = 1.0 / rate
    count = int(math.ceil(duration * rate * 1.2)) + 8
    # Slip: each interval scatters by a few per cent and the scatter accumulates (the rolling elements
    # do not keep a fixed phase), so strikes are not a strictly periodic train.
    intervals = period * np.maximum(1.0 + slip * rng.standard_normal(count), 0.5)
    t = rng.uniform(0.0, period) + np.concatenate([[0.0], np.cumsum(intervals[:-1])])
    t = t[t < duration]
    # strike energy grows with rolling speed, and with the load pressing the elements into the races
    amp = STRIKE_G[fault] * severity * (rpm / REFERENCE_RPM) * (1.0 + LOAD_STRIKE_PER_HP * load_hp)
    scatter = STRIKE_SCATTER[fault]
    a = amp * np.maximum(1.0 + scatter * rng.standard_normal(t.size), 0.0)
    if fault == "inner":
        # the defect turns with the shaft through the fixed load zone
        a *= _load_zone(2 * np.pi * freqs["fr"] * t + rng.uniform(0, 2 * np.pi), load_hp)
    elif fault == "ball":
        # the ball is carried through the load zone by the cage; its strikes alternate outer/inner race
        a *= _load_zone(2 * np.pi * freqs["ftf"] * t + rng.uniform(0, 2 * np.pi), load_hp)
        first = rng.integers(2)
        a[(np.arange(t.size) + first) % 2 == 1] *= BALL_INNER_STRIKE
    return t, a


def _ring(times: np.ndarray, amps: np.ndarray, modes: Sequence[tuple[float, float, float]], fs: float,
          n: int) -> np.ndarray:
    """Sum of damped-mode responses to strikes at exact (fractional-sample) times: (n,) in g."""
    out = np.zeros(n)
    if times.size == 0:
        return out
    slowest = min(zeta * 2 * np.pi * f for f, zeta, _ in modes)       # decay rate 1/s of the longest ring
    length = min(int(math.ceil(math.log(1e4) / slowest * fs)) + 1, n)  # until it has decayed by 80 dB
    chunk = max(1, 2_000_000 // length)                                 # bound memory to ~16 MB per array
    for i in range(0, times.size, chunk):
        t, a = times[i:i + chunk], amps[i:i + chunk]
        k0 = np.ceil(t * fs).astype(np.int64)                           # first sample at or after the strike
        idx = k0[:, None] + np.arange(length)[None, :]                  # (K, L)
        dt = idx / fs - t[:, None]
        h = np.zeros_like(dt)
        for f, zeta, w in modes:
            wn = 2 * np.pi * f
            h += w * np.exp(-zeta * wn * dt) * np.sin(wn * math.sqrt(1 - zeta**2) * dt)
        keep = idx < n
        out += np.bincount(idx[keep], weights=(h * a[:, None])[keep], minlength=n)[:n]
    return out


def _background(n: int, fs: float, rms: float, rng: np.random.Generator) -> np.ndarray:
    """Coloured Gaussian machine background with RMS ``rms`` g: rotor band, a frame mode near 1.15 kHz, a floor."""
    if rms == 0:
        return np.zeros(n)
    f = np.fft.rfftfreq(n, 1.0 / fs)

    def band(fn: float, zeta: float) -> np.ndarray:  # |H|^2 of a second-order band-pass, unit peak
        r = f / fn
        return (2.0 * zeta * r) ** 2 / ((1.0 - r**2) ** 2 + (2.0 * zeta * r) ** 2)

    def mode(fn: float, zeta: float) -> np.ndarray:  # |H|^2 of a second-order resonance, unit peak
        r = f / fn
        return (2.0 * zeta) ** 2 / ((1.0 - r**2) ** 2 + (2.0 * zeta * r) ** 2)

    # Relative power densities shaped after the CWRU drive-end baseline: a rotor band around 100-200 Hz
    # and a frame resonance near 1.1 kHz dominate; below 30 Hz and in 2.5-5 kHz the floor sits 20-35 dB lower.
    power = 1.0 * band(150.0, 0.3) + 1.2 * mode(1100.0, 0.06) + 0.3 * band(600.0, 0.12) + 1e-4
    power[0] = 0.0
    spec = np.sqrt(power) * (rng.standard_normal(f.size) + 1j * rng.standard_normal(f.size))
    x = np.fft.irfft(spec, n=n)
    return x * (rms / max(np.sqrt(np.mean(x**2)), 1e-30))


def _shaft(n: int, fs: float, fr: float, gains: Sequence[float], rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / fs
    scale = (fr * 60.0 / REFERENCE_RPM) ** 2  # imbalance force grows with the square of speed
    out = np.zeros(n)
    for k, g in enumerate(gains, start=1):
        if k * fr < 0.45 * fs:
            out += scale * g * np.sin(2 * np.pi * k * fr * t + rng.uniform(0, 2 * np.pi))
    return out


def _anti_alias(x: np.ndarray, fs: float) -> np.ndarray:
    """The acquisition's anti-alias filter: zero-phase low-pass at 0.45 fs."""
    sos = sps.butter(8, 0.45 * fs, btype="lowpass", fs=fs, output="sos")
    return sps.sosfiltfilt(sos, x, axis=-1)


def _checked_inputs(fault, rpm, fs, duration, severity, load_hp, slip, channels, noise_g) -> tuple[float, ...]:
    """simulate_bearing's numeric arguments as floats (rpm, fs, duration, severity, load_hp, slip, noise RMS);
    a VibganError naming the argument where one is not a number in its range."""
    if fault not in FAULTS:
        raise VibganError(f"simulate_bearing: fault: unknown fault {fault!r}; expected one of {FAULTS}")
    try:
        rpm, fs, duration, severity, load_hp, slip = (float(v) for v in (rpm, fs, duration, severity, load_hp, slip))
    except (TypeError, ValueError):
        raise VibganError("simulate_bearing: rpm, fs, duration, severity, load_hp and slip must be numbers") from None
    if not math.isfinite(rpm) or rpm <= 0:
        raise VibganError(f"simulate_bearing: rpm: expected a positive shaft speed in rev/min, got {rpm!r}")
    if not math.isfinite(fs) or fs <= 0:
        raise VibganError(f"simulate_bearing: fs: expected a positive sampling rate in Hz, got {fs!r}")
    if not math.isfinite(severity) or severity < 0:
        raise VibganError(f"simulate_bearing: severity: expected a finite number >= 0, got {severity!r}")
    if not math.isfinite(load_hp) or load_hp < 0:
        raise VibganError(f"simulate_bearing: load_hp: expected a finite number >= 0, got {load_hp!r}")
    if not math.isfinite(slip) or not 0 <= slip <= 0.2:
        raise VibganError(f"simulate_bearing: slip: expected a fraction in [0, 0.2], got {slip!r}")
    if channels not in (1, 2):
        raise VibganError(f"simulate_bearing: channels: expected 1 (DE) or 2 (DE, FE), got {channels!r}")
    noise = DEFAULT_NOISE_G if noise_g is None else noise_g
    try:
        noise = float(noise)
    except (TypeError, ValueError):
        raise VibganError(f"simulate_bearing: noise_g: expected an RMS level in g, got {noise_g!r}") from None
    if not math.isfinite(noise) or noise < 0:
        raise VibganError(f"simulate_bearing: noise_g: expected an RMS level >= 0 g, got {noise_g!r}")
    return rpm, fs, duration, severity, load_hp, slip, noise


def simulate_bearing(fault: str, rpm: float, fs: float, duration: float, *, severity: float = 1.0,
                     seed: int | None = None, geometry: str | BearingGeometry = "6205", load_hp: float = 0.0,
                     channels: int = 1, resonance_hz: float | Sequence[float] | None = None,
                     noise_g: float | None = None, slip: float = DEFAULT_SLIP, label: str | None = None,
                     shaft_g: Sequence[float] | None = None) -> Recording:
    """Simulate an accelerometer recording (g) of a rolling-element bearing with a localised defect.

    Parameters
    ----------
    fault : 'normal', 'inner' (race), 'outer' (race, in the load zone) or 'ball'.
    rpm : shaft speed in rev/min.
    fs : sampling rate in Hz; must exceed 2.2 x the highest structural resonance.
    duration : length in s (at least one shaft revolution and 256 samples).
    severity : strike amplitude relative to the default level (1 ~ CWRU 0.007 in faults by kurtosis);
        0 gives a healthy-looking signal; ignored for 'normal'.
    seed : random seed; the same seed gives the same signal.
    geometry : bearing name ('6205' drive end, '6203' fan end) or a BearingGeometry.
    load_hp : motor load in hp: stronger strikes, more damped resonances and a wider load zone (weaker
        inner/ball modulation); LOAD_STRIKE_PER_HP, LOAD_DAMPING_PER_HP.
    channels : 1 (drive end 'DE') or 2 ('DE', 'FE': the same strikes through a different, weaker path plus
        its own background).
    resonance_hz : structural resonance(s) in Hz rung by the strikes (default 3.4 and 2.8 kHz).
    noise_g : RMS of the broadband background in g (default 0.07, the CWRU baseline).
    slip : standard deviation of each inter-strike interval as a fraction of the mean (default 0.015).
    label : class label for meta (default the fault name).
    shaft_g : amplitudes (g) of the first shaft-rate harmonics (default 0.006, 0.003, 0.004 g).

    Returns
    -------
    Recording with float32 signal (channels, round(duration fs)) in g and meta: label, fault, diameter_in
    (None: simulated faults have no physical size), rpm, load_hp, sensor, units 'g', source 'simulated',
    severity, seed, geometry, fault_hz (the characteristic envelope frequency, None for normal).
    """
    rpm, fs, duration, severity, load_hp, slip, noise = _checked_inputs(fault, rpm, fs, duration, severity, load_hp,
                                                                        slip, channels, noise_g)
    geo = _geometry(geometry)
    freqs = fault_frequencies(rpm, geo)
    damp = 1.0 + LOAD_DAMPING_PER_HP * load_hp  # load damps the resonances (identity at 0 hp)
    de_modes = tuple((f, z * damp, w) for f, z, w in _modes(resonance_hz, DE_MODES))
    fe_modes = tuple((f, z * damp, w) for f, z, w in FE_MODES) if resonance_hz is None \
        else tuple((f * 0.8, z, w) for f, z, w in de_modes)
    top = max(f for f, _, _ in (de_modes + fe_modes if channels == 2 else de_modes))
    if fs < 2.2 * top:
        raise VibganError(f"simulate_bearing: fs: {fs:g} Hz is too low for the structural resonance at {top:g} Hz; "
                          f"expected fs >= {2.2 * top:g} Hz (2.2 x the resonance)")
    if not math.isfinite(duration) or duration < 1.0 / freqs["fr"] or duration * fs < 256:
        need = max(1.0 / freqs["fr"], 256 / fs)
        raise VibganError(f"simulate_bearing: duration: {duration!r} s is too short; expected at least {need:.4g} s "
                          f"(one shaft revolution and 256 samples)")

    rng = np.random.default_rng(seed)
    n = int(round(duration * fs))
    fc = characteristic_frequency(fault, rpm, geo)
    if fault == "normal" or severity == 0:
        times, amps = np.zeros(0), np.zeros(0)
    else:
        rate = fc  # ball: 2 x BSF, one strike per race per spin
        times, amps = _strike_train(fault, rate, freqs, n / fs, severity, rpm, load_hp, slip, rng)

    shaft = tuple(SHAFT_HARMONICS_G if shaft_g is None else (float(g) for g in shaft_g))
    de = _ring(times, amps, de_modes, fs, n) + _shaft(n, fs, freqs["fr"], shaft, rng) \
        + _background(n, fs, noise, rng)
    rows = [de]
    if channels == 2:
        fe = FE_STRIKE_GAIN * _ring(times, amps, fe_modes, fs, n) \
            + _shaft(n, fs, freqs["fr"], [1.2 * g for g in shaft], rng) \
            + _background(n, fs, FE_NOISE_GAIN * noise, rng)
        rows.append(fe)
    sig = _anti_alias(np.stack(rows), fs).astype(np.float32)
    meta = {
        "label": fault if label is None else str(label),
        "fault": fault,
        "diameter_in": None,
        "rpm": rpm,
        "load_hp": load_hp,
        "sensor": ["DE", "FE"][:channels],
        "units": "g",
        "source": "simulated",
        "severity": 0.0 if fault == "normal" else severity,
        "seed": seed,
        "geometry": geo.name,
        "fault_hz": fc,
    }
    return Recording(sig, fs, meta)


def _derived_seed(seed: int, fault: str, rpm: float, load_hp: float) -> int:
    """A seed per (fault, rpm, load) that does not depend on which other recordings are asked for."""
    ss = np.random.SeedSequence([int(seed), FAULTS.index(fault), int(round(rpm * 1000)), int(round(load_hp * 1000))])
    return int(ss.generate_state(1)[0])


def simulate_dataset(faults: Sequence[str] = ("normal", "inner", "outer", "ball"),
                     rpms: Sequence[float] = (1500, 1800), fs: float = 12000, duration: float = 8.0, *,
                     severity: float = 1.0, seed: int = 0, load_hp: float | Sequence[float] = 0.0, channels: int = 1,
                     geometry: str | BearingGeometry = "6205", resonance_hz: Sequence[float] | None = None,
                     noise_g: float | None = None, shaft_g: Sequence[float] | None = None) -> list[Recording]:
    """The embedded default data set: one simulated recording per (fault, rpm, load), labelled by fault name.

    ``load_hp`` is one motor load or several (each fault at every speed and every load).

    ``resonance_hz``, ``noise_g`` and ``shaft_g`` describe another machine (simulate_bearing; None: the
    default rig, a CWRU-like drive end).

    Each recording's seed is derived from (seed, fault, rpm, load_hp) and stored in its meta, so a recording
    can be regenerated alone with ``simulate_bearing(..., seed=rec.meta['seed'])``.
    """
    if isinstance(faults, str):
        faults = (faults,)
    if not faults or not rpms:
        raise VibganError("simulate_dataset: faults and rpms must each name at least one value")
    try:
        seed = int(seed)
    except (TypeError, ValueError):
        raise VibganError(f"simulate_dataset: seed: expected an integer, got {seed!r}") from None
    if seed < 0:
        raise VibganError(f"simulate_dataset: seed: expected an integer >= 0, got {seed}")
    loads = [load_hp] if np.isscalar(load_hp) else list(load_hp)
    if not loads:
        raise VibganError("simulate_dataset: load_hp: expected one or more motor loads in hp, got none")
    out = []
    for fault in faults:
        if fault not in FAULTS:
            raise VibganError(f"simulate_dataset: faults: unknown fault {fault!r}; expected one of {FAULTS}")
        for rpm in rpms:
            for load in loads:
                try:
                    rpm_f, load_f = float(rpm), float(load)
                except (TypeError, ValueError):
                    raise VibganError(f"simulate_dataset: rpm {rpm!r} and load_hp {load!r} must be numbers") from None
                if not (math.isfinite(rpm_f) and rpm_f > 0):
                    raise VibganError(f"simulate_dataset: rpms: expected positive shaft speeds in rev/min, got {rpm!r}")
                s = _derived_seed(seed, fault, rpm_f, max(load_f, 0.0) if math.isfinite(load_f) else 0.0)
                out.append(simulate_bearing(fault, rpm_f, fs, duration, severity=severity, seed=s, geometry=geometry,
                                            load_hp=load_f, channels=channels, resonance_hz=resonance_hz or None,
                                            noise_g=noise_g or None, shaft_g=shaft_g or None))
    return out
