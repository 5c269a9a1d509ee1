"""Signal maths for vibration: spectra, envelopes and condition indicators (numpy/scipy, no torch).

Every function works on the last axis, is vectorised over any leading axes (segments, channels),
computes in float64 and takes the sampling rate ``fs`` in Hz where time or frequency matters.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft as sp_fft
from scipy import signal as sps

from vibgan.errors import DataError, VibganError

#: The in-band limit (docs/METRICS.md): bins with 0 < f <= IN_BAND * fs are signal; above is anti-alias roll-off.
IN_BAND = 0.45
#: Envelope analysis settings (docs/METRICS.md, metric 5).
ENVELOPE_BAND = (2000.0, 5000.0)
ENVELOPE_NFFT = 65536
ENVELOPE_TOLERANCE = 0.03
ENVELOPE_RATIO = 3.0
ENVELOPE_BASELINE = (5.0, 500.0)
#: Threads for block-wise maths on many segments (FFTs and filters release the GIL); results do not depend on it.
WORKERS = max(1, min(4, int(os.environ.get("VIBGAN_SPECTRAL_WORKERS", os.cpu_count() or 1))))

def as_segments(x: np.ndarray, where: str) -> np.ndarray:
    """(N, T) or (N, C, T) real array -> (N, C, T) without copying when possible."""
    a = np.asarray(x)
    if a.ndim == 2:
        a = a[:, None, :]
    if a.ndim != 3:
        raise DataError(f"{where}: expected segments of shape (N, C, T) or (N, T), got {a.shape}")
    if a.dtype.kind not in "fiu":
        raise DataError(f"{where}: expected real numbers, got dtype {a.dtype}")
    if a.shape[0] < 1 or a.shape[2] < 1:
        raise DataError(f"{where}: expected at least one segment of at least one sample, got {a.shape}")
    return a


def _as_float(x: np.ndarray, name: str = "x") -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise VibganError(f"{name}: expected an array with samples on the last axis, got shape {x.shape}")
    if x.dtype.kind not in "fiu":
        raise VibganError(f"{name}: expected a real numeric array, got dtype {x.dtype}")
    return x.astype(np.float64, copy=False)


def _blockwise(fn, x: np.ndarray, out_len: int, *, block_samples: int = 1 << 22) -> np.ndarray:
    """Apply ``fn`` (rows (B, T) -> (B, out_len)) to the rows of ``x`` (..., T) in blocks of ~block_samples samples.

    Spectral maths on 10,000 segments makes float64/complex copies of the whole array; blocks keep the peak
    memory to a few hundred MB without changing any result.
    """
    lead = x.shape[:-1]
    rows = x.reshape(-1, x.shape[-1])
    step = max(1, block_samples // max(1, rows.shape[1]))
    out = np.empty((rows.shape[0], out_len), dtype=np.float64)
    starts = range(0, rows.shape[0], step)

    def run(i: int) -> None:
        out[i:i + step] = fn(rows[i:i + step])

    if WORKERS > 1 and len(starts) > 1:
        # each block writes its own rows: the result is the same whatever the thread count
        with ThreadPoolExecutor(min(WORKERS, len(starts))) as pool:
            list(pool.map(run, starts))
    else:
        for i in starts:
            run(i)
    return out.reshape(*lead, out_len)


def _check_fs(fs: float) -> float:
    fs = float(fs)
    if not np.isfinite(fs) or fs <= 0:
        raise VibganError(f"fs: expected a positive sampling rate in Hz, got {fs!r}")
    return fs


def fft_magnitude(x: np.ndarray, fs: float, *, n: int | None = None, window: str | None = "hann") -> tuple[np.ndarray, np.ndarray]:
    """Single-sided amplitude spectrum.

    Parameters
    ----------
    x : signal(s), samples on the last axis, in physical units (e.g. g).
    fs : sampling rate in Hz.
    n : FFT length (zero-padded), default the signal length.
    window : window name for scipy.signal.get_window, or None for rectangular.

    Returns
    -------
    freqs : (F,) in Hz; mag : (..., F) amplitude in the units of x (a sine of amplitude A gives ~A at its bin).
    """
    x = _as_float(x)
    fs = _check_fs(fs)
    length = x.shape[-1]
    w = np.ones(length) if window is None else sps.get_window(window, length)
    nfft = length if n is None else int(n)
    spec = np.abs(np.fft.rfft(x * w, n=nfft, axis=-1)) * (2.0 / w.sum())
    # DC (and Nyquist for even lengths) have no mirrored negative-frequency twin: not doubled.
    spec[..., 0] *= 0.5
    if nfft % 2 == 0:
        spec[..., -1] *= 0.5
    return np.fft.rfftfreq(nfft, 1.0 / fs), spec


def psd(x: np.ndarray, fs: float, *, nperseg: int = 256, noverlap: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Welch power spectral density exactly as docs/METRICS.md defines it (Hann, 256/128, constant detrend, density).

    Returns freqs (F,) in Hz and P (..., F) in units^2/Hz, one PSD per leading index.
    """
    x = np.asarray(x)
    fs = _check_fs(fs)
    if x.ndim == 0 or x.shape[-1] < nperseg:
        raise VibganError(f"psd: segments of {x.shape[-1] if x.ndim else 0} samples are shorter than nperseg={nperseg}")

    w = sps.get_window("hann", nperseg)
    scale = 1.0 / (fs * float((w * w).sum()))
    step = nperseg - noverlap
    if step <= 0:
        raise VibganError(f"psd: noverlap={noverlap} must be smaller than nperseg={nperseg}")

    def one(block: np.ndarray) -> np.ndarray:
        # scipy.signal.welch's frames, detrend, window and scaling, as one strided view and one batched FFT
        # (3x faster on 10,000 segments; equal to welch to ~1e-14 relative). float32 input (what generators
        # give) is framed and transformed in float32: 3x faster again, within ~1e-5 dB of float64
        single = block.dtype == np.float32
        frames = np.lib.stride_tricks.sliding_window_view(block if single else _as_float(block), nperseg,
                                                          axis=-1)[..., ::step, :]
        frames = (frames - frames.mean(axis=-1, keepdims=True)) * (w.astype(np.float32) if single else w)
        spec = sp_fft.rfft(frames, axis=-1)
        p = (spec.real * spec.real + spec.imag * spec.imag).mean(axis=-2, dtype=np.float64) * scale
        p[..., 1: nperseg // 2 + (nperseg % 2)] *= 2.0  # one-sided: all but DC (and Nyquist for even nperseg)
        return p

    freqs = np.fft.rfftfreq(nperseg, 1.0 / fs)
    return freqs, _blockwise(one, x, freqs.size)


def mean_psd(x: np.ndarray, fs: float, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """PSD averaged in linear power over all leading axes (segments and channels): (F,) in units^2/Hz."""
    f, p = psd(x, fs, **kwargs)
    return f, p.reshape(-1, p.shape[-1]).mean(axis=0)


def in_band(freqs: np.ndarray, fs: float) -> np.ndarray:
    """Boolean mask of the bins that count for spectral distances: 0 < f <= 0.45 fs."""
    return (freqs > 0) & (freqs <= IN_BAND * _check_fs(fs))


def lsd_db(p_a: np.ndarray, p_b: np.ndarray, freqs: np.ndarray, fs: float) -> np.ndarray:
    """In-band log-spectral distance in dB: sqrt(mean_f (10 log10 P_a - 10 log10 P_b)^2).

    ``p_a`` and ``p_b`` broadcast against each other over leading axes; the result has their broadcast
    leading shape. Zero power is floored at 1e-30 so the distance stays finite.
    """
    mask = in_band(freqs, fs)
    la = 10.0 * np.log10(np.maximum(np.asarray(p_a, dtype=np.float64)[..., mask], 1e-30))
    lb = 10.0 * np.log10(np.maximum(np.asarray(p_b, dtype=np.float64)[..., mask], 1e-30))
    return np.sqrt(np.mean((la - lb) ** 2, axis=-1))


def spectrogram(x: np.ndarray, fs: float, *, nperseg: int = 256, noverlap: int = 192) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Short-time power spectral density: freqs (F,), times (S,) in s, Sxx (..., F, S) in units^2/Hz."""
    x = _as_float(x)
    return sps.spectrogram(x, _check_fs(fs), window="hann", nperseg=nperseg, noverlap=noverlap,
                           scaling="density", axis=-1)


def bandpass(x: np.ndarray, fs: float, low: float, high: float, *, order: int = 4) -> np.ndarray:
    """Zero-phase Butterworth band-pass between ``low`` and ``high`` Hz (order per pass, applied forward-backward)."""
    x = _as_float(x)
    return sps.sosfiltfilt(_butter_bandpass(_check_fs(fs), low, high, order), x, axis=-1)


def _butter_bandpass(fs: float, low: float, high: float, order: int) -> np.ndarray:
    """``bandpass``'s Butterworth as second-order sections, the upper edge kept below Nyquist."""
    high = min(high, 0.499 * fs)
    if not 0 < low < high:
        raise VibganError(f"bandpass: expected 0 < low < high < fs/2, got low={low}, high={high}, fs={fs}")
    return sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")


@functools.lru_cache(maxsize=32)
def _bandpass_power_gain(n: int, fs: float, low: float, high: float, order: int = 4) -> np.ndarray:
    """|H(f)|^2 of ``bandpass``'s Butterworth at the rfft bins of length ``n``: its forward-backward (zero-phase) gain."""
    _, h = sps.sosfreqz(_butter_bandpass(fs, low, high, order), worN=np.fft.rfftfreq(n, 1.0 / fs), fs=fs)
    g = np.abs(h) ** 2
    g.flags.writeable = False
    return g


def _hilbert_weights(n: int) -> np.ndarray:
    h = np.zeros(n // 2 + 1)
    h[0] = 1.0
    h[1:(n + 1) // 2] = 2.0
    if n % 2 == 0:
        h[n // 2] = 1.0
    return h


def squared_envelope(x: np.ndarray, fs: float, band: tuple[float, float] | None = ENVELOPE_BAND, *,
                     method: str = "sosfiltfilt") -> np.ndarray:
    """Squared envelope |hilbert(y)|^2 minus its mean, y the band-passed signal (band=None: no band-pass).

    ``method``: "sosfiltfilt" (default) band-passes as ``bandpass`` does (the definition); "fft" multiplies the
    spectrum by the same filter's zero-phase gain |H(f)|^2 inside the Hilbert transform's FFT, about 3.5x
    cheaper; the two differ only within a few hundred samples of the segment ends (circular vs padded), which
    the envelope spectrum's Hann window weights down (docs/METRICS.md, "How validation computes them fast").
    """
    if method not in ("fft", "sosfiltfilt"):
        raise VibganError(f"squared_envelope: method {method!r}; expected 'fft' or 'sosfiltfilt'")
    fs = _check_fs(fs)
    fused = band is not None and method == "fft"
    # the fast path computes in float32 / complex64 (its hit decisions are the definition's: docs/METRICS.md)
    y = np.asarray(x, dtype=np.float32) if fused else _as_float(x) if band is None else bandpass(x, fs, *band)
    # analytic signal as scipy.signal.hilbert builds it (one-sided spectrum doubled), from a real FFT
    n = y.shape[-1]
    h = _hilbert_weights(n)
    if fused:
        h = (h * _bandpass_power_gain(n, float(fs), float(band[0]), float(band[1]))).astype(np.float32)
    spec = np.zeros(y.shape[:-1] + (n,), dtype=np.complex64 if fused else np.complex128)
    spec[..., : n // 2 + 1] = sp_fft.rfft(y, axis=-1) * h
    env = sp_fft.ifft(spec, axis=-1, overwrite_x=True)
    env = env.real * env.real + env.imag * env.imag
    return (env - env.mean(axis=-1, keepdims=True, dtype=np.float64)).astype(np.float32 if fused else np.float64,
                                                                              copy=False)


def envelope_spectrum(x: np.ndarray, fs: float, *, band: tuple[float, float] | None = ENVELOPE_BAND,
                      nfft: int = ENVELOPE_NFFT, fmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Magnitude spectrum of the Hann-windowed squared envelope, zero-padded to ``nfft``: freqs (F,) Hz, (..., F).

    ``fmax`` (Hz) keeps only the bins k fs / nfft <= fmax; they are computed with a zoom DFT (chirp-z), which
    gives the same values as the zero-padded FFT to ~1e-12 at a fraction of the cost and memory.
    """
    x = np.asarray(x)
    fs = _check_fs(fs)
    length = x.shape[-1]
    n = max(int(nfft), length)
    w = sps.get_window("hann", length)
    if fmax is None or fmax >= fs / 2:
        k = n // 2 + 1

        def one(block: np.ndarray) -> np.ndarray:
            return np.abs(np.fft.rfft(squared_envelope(block, fs, band) * w, n=n, axis=-1))
    else:
        k = int(np.floor(float(fmax) * n / fs)) + 1
        zoom = _zoom(length, k, n, True, fs) if k > 1 else None

        def one(block: np.ndarray) -> np.ndarray:
            env = squared_envelope(block, fs, band) * w
            if zoom is None:
                return np.abs(env.sum(axis=-1, keepdims=True))
            return np.abs(zoom(env))

    freqs = np.arange(k) * (fs / n)
    return freqs, _blockwise(one, x, k, block_samples=1 << 21)


def envelope_profile(x: np.ndarray, fs: float, *, band: tuple[float, float] | None = ENVELOPE_BAND,
                     fmin: float = ENVELOPE_BASELINE[0], fmax: float = ENVELOPE_BASELINE[1]) -> tuple[np.ndarray, np.ndarray]:
    """The shape of a set's envelope spectrum: each segment's (and channel's) envelope magnitude spectrum (no
    zero padding: bins fs / T apart) over fmin..fmax Hz, divided by its own median there, averaged over segments
    and channels, in dB: freqs (F,), (F,). Which defect rates modulate the set, whatever its level."""
    x = as_segments(x, "x")
    freqs, spec = envelope_spectrum(x, fs, band=band, nfft=x.shape[-1], fmax=fmax)  # (N, C, F)
    keep = freqs >= fmin
    spec = spec[..., keep]
    rel = spec / np.maximum(np.median(spec, axis=-1, keepdims=True), 1e-300)
    return freqs[keep], 10 * np.log10(np.maximum(rel.reshape(-1, rel.shape[-1]).mean(axis=0), 1e-30))


def profile_distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference in dB of two envelope profiles (``envelope_profile``) on the same bins."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


def envelope_hits(x: np.ndarray, fs: float, fc: float, *, band: tuple[float, float] = ENVELOPE_BAND,
                  tolerance: float = ENVELOPE_TOLERANCE, ratio: float = ENVELOPE_RATIO,
                  baseline: tuple[float, float] = ENVELOPE_BASELINE, nfft: int = ENVELOPE_NFFT) -> np.ndarray:
    """Per segment: does the envelope spectrum peak at ``fc`` Hz (docs/METRICS.md, metric 5)?

    A segment hits when the largest value within fc +/- 3 % is at least 3 x the median over 5-500 Hz.
    Multichannel input (..., C, T) is judged per channel; the result has the leading shape of x.
    """
    if fc is None or not np.isfinite(fc) or fc <= 0:
        raise VibganError(f"envelope_hits: fc must be a positive frequency in Hz, got {fc!r}")
    fmax = max(baseline[1], fc * (1 + tolerance)) + 1.0
    freqs, spec = envelope_spectrum(x, fs, band=band, nfft=nfft, fmax=fmax)
    win = (freqs >= fc * (1 - tolerance)) & (freqs <= fc * (1 + tolerance))
    base = (freqs >= baseline[0]) & (freqs <= baseline[1])
    peak = spec[..., win].max(axis=-1)
    med = np.median(spec[..., base], axis=-1)
    return peak >= ratio * med


class _ZoomDFT:
    """The first ``m`` bins of the ``n_grid``-point DFT of length-``n`` rows, X[k] = sum_t x[t] e^{-2 pi i k t / n_grid}
    (the zero-padded FFT's low bins), by Bluestein's chirp-z in complex64: 15x faster than scipy's float64
    ZoomFFT, relative error ~3e-7 of the largest bin (docs/METRICS.md, "How validation computes them fast")."""

    def __init__(self, n: int, m: int, n_grid: int) -> None:
        self.m = m
        self.size = sp_fft.next_fast_len(n + m - 1)
        t = np.arange(max(n, m), dtype=np.float64)
        chirp = np.exp(-1j * np.pi * np.mod(t * t, 2 * n_grid) / n_grid)  # W^(t^2 / 2), the phase reduced exactly
        self.pre = chirp[:n].astype(np.complex64)
        self.post = chirp[:m].astype(np.complex64)
        b = np.zeros(self.size, dtype=np.complex128)
        b[:m] = np.conj(chirp[:m])
        b[self.size - n + 1:] = np.conj(chirp[1:n][::-1])
        self.kernel = sp_fft.fft(b).astype(np.complex64)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        a = sp_fft.fft(x.astype(np.float32) * self.pre, n=self.size, axis=-1)
        a *= self.kernel
        return sp_fft.ifft(a, axis=-1, overwrite_x=True)[..., : self.m] * self.post


@functools.lru_cache(maxsize=16)
def _zoom(n: int, m: int, n_grid: int, exact: bool, fs: float):
    if exact:  # scipy's float64 chirp-z: the zero-padded FFT's values to ~1e-12
        zoom = sps.ZoomFFT(n, [0.0, (m - 1) * fs / n_grid], m=m, fs=fs, endpoint=True)
        return lambda x: zoom(x, axis=-1)
    return _ZoomDFT(n, m, n_grid)


def envelope_hits_and_profile(x: np.ndarray, fs: float, fc: float | None, *, band: tuple[float, float] = ENVELOPE_BAND,
                              profile: bool = True, tolerance: float = ENVELOPE_TOLERANCE, ratio: float = ENVELOPE_RATIO,
                              baseline: tuple[float, float] = ENVELOPE_BASELINE, nfft: int = ENVELOPE_NFFT,
                              exact: bool = False) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """``envelope_hits`` (fc given) and ``envelope_profile`` (``profile``) of the same segments from one squared
    envelope per segment: (hits (..., C) or None, profile freqs (F,) or None, profile (F,) dB or None).

    Where the zero-padded length is a multiple of the segment length (65,536 and 4,096), the profile's bins
    (fs / T apart) are every (n / T)-th bin of the hits' zero-padded spectrum, so one zoom DFT serves both;
    the values are those of the two functions (to rounding).

    ``exact``: the definition (sosfiltfilt band-pass, float64 chirp-z), like ``envelope_hits`` and
    ``envelope_profile``; default: the band-pass fused into the Hilbert FFT and a complex64 chirp-z, 5-10x
    faster, with the same hit decisions on every CWRU window (docs/METRICS.md, "How validation computes them fast").
    """
    x = as_segments(x, "x") if np.asarray(x).ndim != 1 else np.asarray(x)[None, None, :]
    fs = _check_fs(fs)
    if fc is not None and (not np.isfinite(fc) or fc <= 0):
        raise VibganError(f"envelope_hits: fc must be a positive frequency in Hz, got {fc!r}")
    length = x.shape[-1]
    w = sps.get_window("hann", length)
    w = w if exact else w.astype(np.float32)
    n_hit = max(int(nfft), length)
    want_hits = fc is not None
    shared = want_hits and profile and n_hit % length == 0
    k_prof = int(np.floor(baseline[1] * length / fs)) + 1  # profile bins 0 .. fmax at fs / T
    prof_keep = np.arange(k_prof) * (fs / length) >= baseline[0]
    n_prof = int(prof_keep.sum())
    width = 0  # columns per row of the block results: the hit flag, then the profile's bins
    if want_hits:
        fmax = max(baseline[1], fc * (1 + tolerance)) + 1.0
        k_hit = int(np.floor(fmax * n_hit / fs)) + 1
        freqs_h = np.arange(k_hit) * (fs / n_hit)
        win = (freqs_h >= fc * (1 - tolerance)) & (freqs_h <= fc * (1 + tolerance))
        base = (freqs_h >= baseline[0]) & (freqs_h <= baseline[1])
        zoom_h = _zoom(length, k_hit, n_hit, exact, fs)
        width += 1
    if profile:
        zoom_p = None if shared else _zoom(length, k_prof, length, exact, fs)
        step = n_hit // length if shared else 1
        width += n_prof
    if width == 0:
        return None, None, None

    def one(block: np.ndarray) -> np.ndarray:
        env = squared_envelope(block, fs, band, method="sosfiltfilt" if exact else "fft") * w
        out = []
        spec_h = None
        if want_hits:
            spec_h = np.abs(zoom_h(env))
            out.append((spec_h[:, win].max(axis=-1) >= ratio * np.median(spec_h[:, base], axis=-1))[:, None])
        if profile:
            spec = spec_h[:, : (k_prof - 1) * step + 1: step] if shared else np.abs(zoom_p(env))
            spec = spec[:, prof_keep]
            out.append(spec / np.maximum(np.median(spec, axis=-1, keepdims=True), 1e-300))
        return np.concatenate(out, axis=-1)

    res = _blockwise(one, x, width, block_samples=1 << 21)  # (N, C, width)
    hits = res[..., 0] > 0.5 if want_hits else None
    if not profile:
        return hits, None, None
    rel = res[..., width - n_prof:]
    freqs_p = (np.arange(k_prof) * (fs / length))[prof_keep]
    return hits, freqs_p, 10 * np.log10(np.maximum(rel.reshape(-1, n_prof).mean(axis=0), 1e-30))


def envelope_hit_rate(x: np.ndarray, fs: float, fc: float, **kwargs) -> float:
    """Fraction of segments (and channels) whose envelope spectrum hits ``fc``; see envelope_hits."""
    return float(np.mean(envelope_hits(x, fs, fc, **kwargs)))


def indicators(x: np.ndarray) -> dict[str, np.ndarray]:
    """Condition indicators per segment over the last axis: rms, peak, crest, kurtosis (non-excess), skewness.

    Units: rms and peak in the units of x; crest, kurtosis (3 for Gaussian noise) and skewness dimensionless.
    """
    x = np.asarray(x)
    if x.ndim == 0 or x.shape[-1] == 0:
        raise VibganError(f"x: expected an array with samples on the last axis, got shape {x.shape}")
    names = ("rms", "peak", "crest", "kurtosis", "skewness")

    def one(block: np.ndarray) -> np.ndarray:
        b = _as_float(block)
        mean = b.mean(axis=-1)
        d = b - mean[:, None]
        d2 = d * d  # products instead of powers: several times faster on 10,000 segments
        var = d2.mean(axis=-1)
        safe = np.where(var > 0, var, np.nan)
        rms = np.sqrt(var + mean * mean)
        peak = np.maximum(b.max(axis=-1), -b.min(axis=-1))
        m3 = np.einsum("ij,ij->i", d2, d) / b.shape[-1]
        m4 = np.einsum("ij,ij->i", d2, d2) / b.shape[-1]
        return np.stack([rms, peak, peak / np.where(rms > 0, rms, np.nan), m4 / safe**2, m3 / safe**1.5], axis=-1)

    out = _blockwise(one, x, len(names))
    return {name: out[..., i] for i, name in enumerate(names)}


def spectral_kurtosis(x: np.ndarray, fs: float, *, nperseg: int = 128, noverlap: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """Spectral kurtosis from the STFT: SK(f) = <|X|^4> / <|X|^2>^2 - 2, averaged over time frames.

    Returns freqs (F,) and SK (..., F); impulsive bands have SK well above 0, stationary Gaussian noise ~0.
    """
    x = _as_float(x)
    f, _, z = sps.stft(x, _check_fs(fs), window="hann", nperseg=nperseg, noverlap=noverlap, axis=-1)
    p = np.abs(z) ** 2
    m2 = p.mean(axis=-1)
    m4 = (p**2).mean(axis=-1)
    return f, m4 / np.maximum(m2, 1e-30) ** 2 - 2.0


#: STFT window lengths (samples) of the kurtogram: 2^k and 1.5 x 2^k, as in the fast kurtogram's 1/3-binary tree
KURTOGRAM_LEVELS = (8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def kurtogram(x: np.ndarray, fs: float, *, levels: tuple[int, ...] = KURTOGRAM_LEVELS, max_segments: int = 256,
              seed: int = 0) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """The STFT kurtogram (Antoni and Randall 2006; the dyadic grid of the fast kurtogram, Antoni 2007, built
    from Hann-windowed STFTs): for each window length ``nperseg`` in ``levels``, the spectral kurtosis of every
    frequency band (``spectral_kurtosis``), averaged over segments and channels.

    x : (N, C, T) or (N, T) segments; at most ``max_segments`` are used (a seeded subset).
    Returns [(nperseg, freqs (F,), SK (F,))] for nperseg = 8, 16, ... up to T / 4: bands fs / nperseg wide.
    """
    x = as_segments(x, "kurtogram")
    if x.shape[0] > max_segments:
        x = x[np.sort(np.random.default_rng(seed).choice(x.shape[0], max_segments, replace=False))]
    out = []
    for nperseg in levels:
        if nperseg * 4 > x.shape[-1]:
            break
        f, sk = spectral_kurtosis(x, fs, nperseg=nperseg, noverlap=nperseg * 3 // 4)
        out.append((nperseg, f, sk.reshape(-1, len(f)).mean(axis=0)))
    return out


def impulsive_band(segments: list[np.ndarray], fs: float, *, min_bandwidth: float = 0.0, min_low: float = 0.0,
                   seed: int = 0) -> dict[str, float]:
    """The frequency band where the signals are most impulsive: the kurtogram cell of highest spectral kurtosis,
    SK averaged over the given sets with equal weight (one set per fault class: a class with few windows counts
    as much as one with many).

    A cell of window ``nperseg`` centred on f spans f +- fs / nperseg (the Hann window's main lobe). Only cells
    at least ``min_bandwidth`` wide whose low edge is >= ``min_low`` and whose high edge is <= IN_BAND x fs are
    candidates (the envelope must resolve the fault frequencies and stay clear of the shaft harmonics).
    Returns low, high, centre, bandwidth (Hz), sk and nperseg; None-free: where no cell qualifies, the widest
    band that does (a ValueError only when the signals are shorter than 32 samples).
    """
    fs = _check_fs(fs)
    maps = [kurtogram(x, fs, seed=seed + i) for i, x in enumerate(segments) if len(x)]
    if not maps or not maps[0]:
        raise ValueError("impulsive_band: no segments of at least 32 samples")
    best = None
    fallback = None
    for level in range(min(len(m) for m in maps)):
        nperseg, f, _ = maps[0][level]
        sk = np.mean([m[level][2] for m in maps], axis=0)
        half = fs / nperseg
        low, high = f - half, f + half
        ok = (low >= min_low) & (high <= IN_BAND * fs) & (low > 0)
        if not ok.any():
            continue
        if fallback is None:  # the coarsest level with a valid cell
            i = int(np.flatnonzero(ok)[np.argmax(sk[ok])])
            fallback = (nperseg, f[i], half, sk[i])
        if 2 * half < min_bandwidth:
            continue
        i = int(np.flatnonzero(ok)[np.argmax(sk[ok])])
        if best is None or sk[i] > best[3]:
            best = (nperseg, f[i], half, sk[i])
    pick = best or fallback
    if pick is None:
        low, high = max(min_low, fs / 64), IN_BAND * fs
        return {"low": float(low), "high": float(high), "centre": float((low + high) / 2),
                "bandwidth": float(high - low), "sk": float("nan"), "nperseg": 0}
    nperseg, fc, half, sk = pick
    return {"low": float(fc - half), "high": float(fc + half), "centre": float(fc), "bandwidth": float(2 * half),
            "sk": float(sk), "nperseg": int(nperseg)}


def choose_envelope_band(sets: dict[str, np.ndarray], fs: float, fault_freqs: dict[str, float | None], *,
                         seed: int = 0) -> dict[str, float]:
    """A data set's envelope band (docs/METRICS.md): ``impulsive_band`` over the windows of its fault classes
    (the labels with a fault frequency; every label where none has one), at least
    max(2 x ENVELOPE_BASELINE[1], 4 x f_max) wide so the squared envelope holds the baseline range and the
    fault frequencies' first harmonics, and starting at or above 10 x f_max, clear of the shaft and defect
    harmonics themselves (f_max: the highest fault frequency in the data set). Adds ``rule`` to the result."""
    fcs = [float(f) for f in fault_freqs.values() if f]
    top = max(fcs) if fcs else 0.0
    use = [sets[lab] for lab in sets if fault_freqs.get(lab)] or list(sets.values())
    band = impulsive_band(use, fs, min_bandwidth=max(2 * ENVELOPE_BASELINE[1], 4 * top), min_low=10 * top, seed=seed)
    band["rule"] = (f"kurtogram of {len(use)} class(es)' real training windows: the most impulsive band at least "
                    f"{max(2 * ENVELOPE_BASELINE[1], 4 * top):.0f} Hz wide, above {10 * top:.0f} Hz")
    return band
