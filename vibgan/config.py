"""Configuration: nested dataclasses, loaded from TOML, overridden with ``--set a.b=value``.

Config files are data: they are parsed as TOML, never evaluated. Unknown keys and wrong types raise a
ConfigError naming the file and the field before any work starts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vibgan.bearing import GEOMETRIES, geometry
from vibgan.champion import CHAMPION_POLICIES
from vibgan.device import PRECISIONS
from vibgan.errors import ConfigError, VibganError
from vibgan.losses import ADVERSARIAL, LAMBDA_NAMES

#: model.impulse_trains: every train for every class, or each class's own fault train (vibgan.networks.train_mask)
IMPULSE_TRAINS = ("all", "fault")

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


@dataclass
class SimulateConfig:
    """The embedded physics-simulated data set (vibgan.synthetic.simulate_bearing)."""
    faults: list[str] = field(default_factory=lambda: ["normal", "inner", "outer", "ball"])
    rpms: list[float] = field(default_factory=lambda: [1500.0, 1800.0])
    load_hp: float = 0.0
    duration_s: float = 8.0
    severity: float = 1.0
    seed: int = 1234
    # another machine: its structural resonances (Hz), background RMS (g) and shaft-harmonic amplitudes (g);
    # empty / 0: the default rig (3.4 and 2.8 kHz, 0.07 g, CWRU-like)
    resonance_hz: list[float] = field(default_factory=list)
    noise_g: float = 0.0
    shaft_g: list[float] = field(default_factory=list)
    fs: float = 0.0  # Hz the simulated sensor samples at; 0: data.fs (12 kHz when that is 0 too)


@dataclass
class BearingConfig:
    """A bearing by its numbers (n_balls > 0 switches it on; data.geometry names a known one otherwise)."""

    n_balls: int = 0
    ball_diameter: float = 0.0
    pitch_diameter: float = 0.0
    contact_angle_deg: float = 0.0
    unit: str = "mm"  # of the two diameters (reports only: the defect frequencies depend on their ratio)


@dataclass
class DataConfig:
    """Where the training signals come from and how they are cut."""
    source: str = "simulated"  # simulated | files | sinusoid
    path: str = ""  # a directory or file of recordings when source = "files"
    extra_paths: list[str] = field(default_factory=list)  # more directories or files, loaded with data.path
    # "class": one scale per class (default); "recording": each recording by its own statistics, where sensor
    # gains differ between recordings (outputs return in the units of each class and condition's recordings)
    normalize: str = "class"
    manifest: str = ""  # a CSV/Parquet manifest of recordings (vibgan.manifest) when source = "files"; wins over path
    lazy: bool = False  # read training windows from data.path (an HDF5 recordings file) per batch, not into memory
    # Hz: every recording is resampled to this rate (resample_poly, exact ratio; the original rate stays in its
    # meta); 0 keeps each file's own rate, and files of different rates are then an error. The simulator
    # synthesises at this rate (12 kHz when 0).
    fs: float = 0.0
    channels: list[str] = field(default_factory=lambda: ["DE"])
    classes: list[str] = field(default_factory=list)  # empty: every class found
    segment_length: int = 0  # samples per training segment; 0: from the physics (datasets.segment_length_for)
    train_fraction: float = 0.7  # first part of each recording: training
    val_fraction: float = 0.0  # next part: validation (monitoring); the rest is held out for testing
    geometry: str = "6205"  # a known bearing (vibgan.bearing.GEOMETRIES) for the fault frequencies
    bearing: BearingConfig = field(default_factory=BearingConfig)  # or one by its numbers (n_balls > 0)
    n_sinusoids: int = 8192  # size of the sinusoid data set (source = "sinusoid")
    simulate: SimulateConfig = field(default_factory=SimulateConfig)


@dataclass
class ModelConfig:
    """Generator and discriminator architecture."""
    kind: str = "conv1d"  # conv1d | mlp (the seed dense GAN)
    noise_dim: int = 64  # mlp: noise vector size; conv1d: noise channels at the coarsest rate
    noise: str = "normal"  # normal | uniform (uniform in [-1, 1], the seed GAN's choice)
    hidden: list[int] = field(default_factory=lambda: [256, 64])  # mlp generator hidden widths (ReLU)
    out_activation: str = "none"  # mlp output activation: tanh | sigmoid | none
    d_hidden: list[int] = field(default_factory=lambda: [64])  # mlp discriminator hidden widths
    d_dropout: float = 0.4  # mlp discriminator dropout
    upsample: list[int] = field(default_factory=lambda: [4, 4, 4])  # conv1d noise upsampling factors
    widths: list[int] = field(default_factory=lambda: [96, 64, 48, 16])  # conv1d channels per rate, coarse to full
    res_blocks: list[int] = field(default_factory=lambda: [0, 1, 2, 1])  # dilated residual blocks per rate
    # conv1d: the output layer's own upsampling: 1, a convolution at the last level's rate (the full rate); u > 1,
    # a transposed convolution from the last level, at 1/u of the full rate, to the output (no full-rate level)
    out_upsample: int = 1
    kernel: int = 7
    embed_dim: int = 16  # class embedding size
    phase_inputs: bool = True  # feed the generator phase signals at the bearing's characteristic frequencies
    equalizer: bool = True  # per-class learned output filter (source-filter generator)
    eq_fft: int = 256  # equalizer resolution: gains at eq_fft // 2 + 1 frequencies, an FIR of eq_fft + 1 taps
    impulse_taps: int = 0  # conv1d: >0 adds deterministic impacts (impulse trains at fr, FTF, BPFO, BPFI, 2 x BSF
    #                        through learned per-class impulse responses of this many taps); 0: off
    # the same given in milliseconds at the training rate (used where impulse_taps is 0), so one config serves any
    # sampling rate: 21.3 ms is 256 taps at 12 kHz, 341 at 16 kHz; 0: off
    impulse_ms: float = 0.0
    # the impulse path's per-impact random gains: one number per this many ms of signal (0: one per sample, as
    # models saved before it); impacts of one train share a number only above 1000 / jitter_cell_ms Hz
    jitter_cell_ms: float = 0.0
    # which impulse trains a class may use: "all" (fr, FTF, BPFO, BPFI and 2 x BSF for every class, as models
    # saved before it) or "fault": a class of known fault type only its own train (inner BPFI, outer BPFO, ball
    # 2 x BSF), a normal class none, a class of unknown type ("other", no fault in its meta) all of them
    impulse_trains: str = "all"
    # the impulse responses' ring-down prior: tap i weighted by exp(-t_i / impulse_decay_ms), so the learned kernels
    # ring down like a struck structure (0: flat, as models saved before it)
    impulse_decay_ms: float = 0.0
    # the impacts' amplitude grows with speed as (shaft rate / the training data's mean shaft rate) ** this, a
    # physical prior (strike energy grows with rolling speed: amplitude ~ speed, exponent 1); 0: the same
    # amplitude at every speed, as models saved before it
    impulse_speed_exp: float = 0.0
    # conv1d: per-class variety knobs, fitted at the end of training on the training part (vibgan.calibrate.
    # calibrate_variety): a noise temperature, a speed-slip scale, a per-segment random spectral gain along the
    # real windows' main mode of variation and, with impulse_taps, the impulse path's gain
    variety: bool = False
    d_channels: int = 16
    d_scales: int = 2  # multi-scale discriminators (HiFi-GAN style): the signal, then 2x average-pooled, ...
    spectral_norm: bool = True

    @property
    def hop(self) -> int:
        """conv1d: output samples per latent step, the product of the upsampling factors (out_upsample included)."""
        return int(math.prod(self.upsample)) * int(self.out_upsample)

    def impulse_length(self, fs: float) -> int:
        """conv1d: the impulse path's kernel length in samples at fs: impulse_taps, else impulse_ms at fs (0: off)."""
        if self.impulse_taps:
            return int(self.impulse_taps)
        return max(1, int(round(self.impulse_ms * fs / 1000.0))) if self.impulse_ms else 0


@dataclass
class TrainConfig:
    """The adversarial training loop."""
    steps: int = 600
    batch_size: int = 32
    loss: str = "hinge"  # minimax | nonsaturating | wgan-gp | hinge
    d_steps: int = 1  # k: discriminator steps per iteration
    g_steps: int = 1  # l: generator steps per iteration
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    lr_eq: float = 1e-2  # the equalizer's log-gains: large steps, they are few and well conditioned
    lr_phase: float = 2e-3  # the per-class phase-input projections (which defect rates modulate each class)
    lr_impulse: float = 2e-3  # the impulse path (model.impulse_taps): kernels, modulation, gain spreads
    betas: list[float] = field(default_factory=lambda: [0.5, 0.9])
    gp_weight: float = 10.0
    ema_decay: float = 0.99
    lambdas: dict[str, float] = field(default_factory=lambda: {"adv": 1.0, "spectral": 1.0, "kurtosis": 0.0,
                                                                "envelope": 0.0, "spread": 0.0})
    # band-pass (Hz) before the envelope, in the envelope loss and the envelope checks: the structural resonance
    # the fault impacts excite; empty: chosen from the real training windows (TrainData.choose_envelope_band)
    envelope_band: list[float] = field(default_factory=list)
    # spread loss: false measures each generated segment against the real class mean PSD (a biased class
    # spectrum then counts as variety); true compares generated segments with each other (losses.pairwise_spread)
    spread_pairwise: bool = False
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "fp32"  # fp32 | bf16 | fp16
    seed: int = 0
    log_every: int = 20
    eval_every: int = 200
    sample_every: int = 200
    checkpoint_every: int = 200
    keep_checkpoints: int = 3
    max_rollbacks: int = 3
    threads: int = 0  # torch CPU threads; 0 keeps torch's default
    calibration_rounds: int = 2  # coordinate-descent rounds of the variety calibration (model.variety)
    progress: bool = True


@dataclass
class ValidateConfig:
    """Fidelity thresholds (the defaults of docs/METRICS.md) and evaluation sizes."""
    n_fake: int = 64  # generated segments per class for the final report
    lsd_db: float = 1.5
    lsd_floor_factor: float = 1.5
    hit_rate: float = 0.9
    kurtosis_rel: float = 0.25
    spread_min: float = 0.8
    spread_max: float = 1.25
    c2st: bool = True
    c2st_margin: float = 0.1  # pooled C2ST accuracy may exceed the pooled real floor (training vs held-out) by this


@dataclass
class TrackingConfig:
    """MLflow tracking; an empty uri means MLFLOW_TRACKING_URI or a local sqlite store in the working directory."""
    enabled: bool = True
    uri: str = ""
    experiment: str = "vibgan"
    register_name: str = "vibgan-sim"
    champion_if: str = "passed"  # passed | passed-or-first | always | never: when a new version becomes champion
    run_name: str = ""


@dataclass
class DistillConfig:
    """Distillation of the trained, calibrated generator into a cheaper student of the same design (vibgan.distill):
    a narrower body learns the full one's output for the same latent inputs; the parts outside the body (impulse
    path, equaliser, variety knobs) are copied. The student is what is saved as ``generator`` and registered; the
    full generator stays beside it as ``generator_full``."""
    enabled: bool = False
    widths: list[int] = field(default_factory=list)  # the student's channels per rate; empty: the teacher's
    kernel: int = 0  # the student's convolution kernel; 0: the teacher's
    res_blocks: list[int] = field(default_factory=list)  # the student's residual blocks per rate; empty: the teacher's
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    compare: bool = True  # the report also scores the full generator and prints both side by side


@dataclass
class Config:
    """The whole resolved configuration of a run."""
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validate: ValidateConfig = field(default_factory=ValidateConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    out: str = "runs/default"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (int->float allowed); return the typed value."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
        return dataclass_from_dict(tp, value, where)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of {_type_name(item_tp)}, got {type(value).__name__} {value!r}")
        return [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__} {value!r}")
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: value {value!r} fits none of {tp}")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        if value != value or abs(value) > 1e308:  # nan, inf, or an integer too large for a float
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported field type {tp}")  # pragma: no cover


def dataclass_from_dict(cls: type, data: dict, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in data.items()}
    for f in dataclasses.fields(cls):  # a dict-valued field merges over its default: {kurtosis = 2} keeps the rest
        if f.name in kwargs and isinstance(kwargs[f.name], dict) and f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
            if isinstance(default, dict):
                kwargs[f.name] = {**default, **kwargs[f.name]}
    return cls(**kwargs)


def from_dict(data: dict, source: str = "config") -> Config:
    """Build a validated Config from a nested dict (as TOML or JSON gives it)."""
    cfg = dataclass_from_dict(Config, data, "")
    check(cfg, source)
    return cfg


def to_dict(cfg: Config) -> dict:
    """The nested plain-value form of a config (JSON/TOML-serialisable)."""
    return dataclasses.asdict(cfg)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Flatten a nested dict into dotted keys: {'train.steps': 600, ...} (for MLflow params)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _parse_override_value(text: str) -> Any:
    """Parse the value of ``--set key=value`` as a TOML value; bare words fall back to strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    except RecursionError:
        raise ConfigError(f"--set value {text[:40]!r}...: nested too deeply") from None


def apply_overrides(data: dict, overrides: list[str], source: str = "--set") -> dict:
    """Apply ``a.b=value`` overrides to a nested dict (values parsed as TOML: 2000, 1e-4, true, [1, 2], "x")."""
    data = json.loads(json.dumps(data))  # deep copy of plain values
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"{source} {item!r}: expected key=value, e.g. train.steps=2000")
        key, text = item.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"{source} {item!r}: empty key")
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"{source} {item!r}: {p!r} is a value, not a table")
            node = nxt
        node[parts[-1]] = _parse_override_value(text.strip())
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a TOML config file (None: the built-in defaults), apply overrides, validate.

    Relative ``data.path`` values are resolved against the config file's directory when they exist there,
    else against the working directory.
    """
    data: dict = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {p}: not found") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {p}: cannot be read as UTF-8 text ({e})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"config file {p}: not valid TOML ({e})") from None
        except RecursionError:
            raise ConfigError(f"config file {p}: not valid TOML (nested too deeply)") from None
        dp = data.get("data", {}).get("path") if isinstance(data.get("data"), dict) else None
        if isinstance(dp, str) and dp and not Path(dp).is_absolute():
            cand = (p.parent / dp).resolve()
            if cand.exists() and not Path(dp).exists():
                data["data"]["path"] = str(cand)
    if overrides:
        data = apply_overrides(data, overrides)
    try:
        cfg = dataclass_from_dict(Config, data, "")
        check(cfg, "")
    except ConfigError as e:
        msg = str(e).removeprefix("config : ")
        raise ConfigError(f"{_blame(msg, source, overrides or [])}: {msg}") from None
    return cfg


def _blame(message: str, source: str, overrides: list[str]) -> str:
    """Where the value a message is about came from: the --set override that names its field, else the file."""
    for item in reversed(overrides):  # the last override of a key wins, so it is the one to name
        key = item.split("=", 1)[0].strip()
        section, _, leaf = key.rpartition(".")
        if message.startswith((f"{key} ", f"{key}:", f"{key}=")) or (
                section and message.startswith((f"{section}: unknown key", f"{section} = ")) and f"'{leaf}'" in message):
            return f"--set {item.strip()}"
    return f"config {source}"


def check(cfg: Config, source: str = "config") -> None:
    """Semantic checks that types alone cannot express; raises ConfigError naming the field."""
    def bad(fieldname: str, expected: str, value: Any) -> None:
        raise ConfigError(f"config {source}: {fieldname} = {value!r}; expected {expected}")

    d, m, t = cfg.data, cfg.model, cfg.train
    if d.source not in ("simulated", "files", "sinusoid"):
        bad("data.source", "one of 'simulated', 'files', 'sinusoid'", d.source)
    if d.source == "files" and not (d.path or d.manifest):
        bad("data.path", "a directory or file of recordings (or data.manifest) when data.source = 'files'", d.path)
    if d.bearing.n_balls:
        try:
            geometry({"n_balls": d.bearing.n_balls, "ball_diameter": d.bearing.ball_diameter,
                      "pitch_diameter": d.bearing.pitch_diameter, "contact_angle_deg": d.bearing.contact_angle_deg})
        except VibganError as e:
            bad("data.bearing", f"a valid bearing ({e})", dataclasses.asdict(d.bearing))
    else:
        try:
            geometry(d.geometry)
        except VibganError:
            bad("data.geometry", f"a known bearing ({', '.join(sorted(GEOMETRIES))}) or numbers in [data.bearing]",
                d.geometry)
    if d.lazy and (d.source != "files" or not d.path.lower().endswith((".h5", ".hdf5"))):
        bad("data.lazy", "true only with data.source = 'files' and data.path an HDF5 recordings file (.h5)",
            f"{d.lazy} (source {d.source!r}, path {d.path!r})")
    if t.calibration_rounds < 1:
        bad("train.calibration_rounds", "at least 1", t.calibration_rounds)
    if d.normalize not in ("class", "recording") or (d.normalize == "recording" and d.lazy):
        bad("data.normalize", "'class' or 'recording' ('recording' not with data.lazy)", d.normalize)
    if d.fs < 0:
        bad("data.fs", "a positive sampling rate in Hz (0: each file's own rate)", d.fs)
    if d.segment_length < 16 and not (d.segment_length == 0 and d.source != "sinusoid" and m.kind == "conv1d"
                                      and not d.lazy):
        bad("data.segment_length", "at least 16 samples (0, from the physics, only for conv1d models on recorded or "
            "simulated data, not data.lazy)", d.segment_length)
    if not (0 < d.train_fraction <= 1) or not (0 <= d.val_fraction < 1) or d.train_fraction + d.val_fraction > 1:
        bad("data.train_fraction/val_fraction", "0 < train, 0 <= val, train + val <= 1",
            (d.train_fraction, d.val_fraction))
    if not d.channels and d.source != "files":
        bad("data.channels", "at least one channel name (the simulator makes one signal per name)", d.channels)
    s = d.simulate
    for f in s.faults:
        if f not in ("normal", "inner", "outer", "ball"):
            bad("data.simulate.faults", "faults among normal, inner, outer, ball", s.faults)
    if not s.rpms or any(r <= 0 for r in s.rpms):
        bad("data.simulate.rpms", "a non-empty list of positive speeds in rpm", s.rpms)
    if s.duration_s <= 0:
        bad("data.simulate.duration_s", "a positive duration in seconds", s.duration_s)
    if any(f <= 0 for f in s.resonance_hz):
        bad("data.simulate.resonance_hz", "positive resonance frequencies in Hz (empty: the default rig)", s.resonance_hz)
    if s.fs < 0:
        bad("data.simulate.fs", "a sampling rate in Hz >= 0 (0: data.fs)", s.fs)
    if s.noise_g < 0 or any(g < 0 for g in s.shaft_g):
        bad("data.simulate.noise_g/shaft_g", "amplitudes in g >= 0 (0 / empty: the default rig)", (s.noise_g, s.shaft_g))
    if m.kind not in ("conv1d", "mlp"):
        bad("model.kind", "'conv1d' or 'mlp'", m.kind)
    if m.noise not in ("normal", "uniform"):
        bad("model.noise", "'normal' or 'uniform'", m.noise)
    if m.out_activation not in ("tanh", "sigmoid", "none"):
        bad("model.out_activation", "'tanh', 'sigmoid' or 'none'", m.out_activation)
    if m.kind == "conv1d":
        for u in m.upsample:
            if u < 1:
                bad("model.upsample", "factors >= 1", m.upsample)
        if isinstance(m.out_upsample, bool) or not isinstance(m.out_upsample, int) or not 1 <= m.out_upsample <= 16:
            bad("model.out_upsample", "a whole number in 1-16 (1: the output layer works at the full rate)",
                m.out_upsample)
        if d.segment_length and d.segment_length % m.hop:
            bad("data.segment_length", f"a multiple of the product of model.upsample and model.out_upsample ({m.hop})",
                d.segment_length)
        if len(m.widths) != len(m.upsample) + 1 or any(w < 1 for w in m.widths):
            bad("model.widths", f"{len(m.upsample) + 1} positive widths (one per rate)", m.widths)
        if len(m.res_blocks) != len(m.upsample) + 1 or any(r < 0 for r in m.res_blocks):
            bad("model.res_blocks", f"{len(m.upsample) + 1} non-negative counts (one per rate)", m.res_blocks)
        if isinstance(m.jitter_cell_ms, bool) or not isinstance(m.jitter_cell_ms, (int, float)) \
                or not 0 <= m.jitter_cell_ms <= 10:
            bad("model.jitter_cell_ms", "a number of milliseconds in 0-10 (0: one random gain per sample)",
                m.jitter_cell_ms)
        if not 0 <= m.impulse_taps <= 4096:  # the loader has already refused a non-integer
            bad("model.impulse_taps", "a whole number of taps in 0-4096 (0: no impulse path)", m.impulse_taps)
        if isinstance(m.impulse_ms, bool) or not isinstance(m.impulse_ms, (int, float)) or not 0 <= m.impulse_ms <= 200:
            bad("model.impulse_ms", "a number of milliseconds in 0-200 (0: impulse_taps decides)", m.impulse_ms)
        elif d.fs and m.impulse_length(d.fs) > 4096:
            bad("model.impulse_ms", f"at most {4096_000 / d.fs:.0f} ms at data.fs = {d.fs:g} Hz (4,096 taps)",
                m.impulse_ms)
        if isinstance(m.impulse_decay_ms, bool) or not isinstance(m.impulse_decay_ms, (int, float)) \
                or not 0 <= m.impulse_decay_ms <= 200:
            bad("model.impulse_decay_ms", "a number of milliseconds in 0-200 (0: no ring-down taper)",
                m.impulse_decay_ms)
        if isinstance(m.impulse_speed_exp, bool) or not isinstance(m.impulse_speed_exp, (int, float)) \
                or not 0 <= m.impulse_speed_exp <= 4:
            bad("model.impulse_speed_exp", "a number in 0-4 (impact amplitude ~ speed ** it; 0: independent of speed)",
                m.impulse_speed_exp)
        if m.impulse_trains not in IMPULSE_TRAINS:
            bad("model.impulse_trains", f"one of {', '.join(map(repr, IMPULSE_TRAINS))}", m.impulse_trains)
        if m.variety and not m.equalizer:
            bad("model.variety", "false unless model.equalizer is true (the segment gains act through it)", m.variety)
    if t.steps < 0:
        bad("train.steps", "a non-negative number of steps", t.steps)
    if t.batch_size < 1:
        bad("train.batch_size", "at least 1", t.batch_size)
    if t.loss not in ADVERSARIAL:
        bad("train.loss", f"one of {', '.join(ADVERSARIAL)}", t.loss)
    if t.d_steps < 1 or t.g_steps < 1:
        bad("train.d_steps/g_steps", "at least 1 each", (t.d_steps, t.g_steps))
    if len(t.betas) != 2 or not all(0 <= b < 1 for b in t.betas):
        bad("train.betas", "two numbers [beta1, beta2], each in [0, 1)", t.betas)
    for k in ("lr_g", "lr_d", "lr_eq", "lr_phase", "lr_impulse"):  # torch's optimisers would refuse them only once training starts
        if getattr(t, k) <= 0:
            bad(f"train.{k}", "a positive learning rate", getattr(t, k))
    if t.threads < 0:
        bad("train.threads", "0 (torch's default) or a positive number of CPU threads", t.threads)
    if t.precision not in PRECISIONS:
        bad("train.precision", f"one of {', '.join(PRECISIONS)}", t.precision)
    if not (t.device in ("auto", "cpu", "cuda", "mps") or t.device.startswith("cuda:")):
        bad("train.device", "auto, cpu, cuda or cuda:N", t.device)
    if not 0 <= t.ema_decay < 1:
        bad("train.ema_decay", "0 <= decay < 1", t.ema_decay)
    if cfg.tracking.champion_if not in CHAMPION_POLICIES:
        bad("tracking.champion_if", f"one of {', '.join(CHAMPION_POLICIES)}", cfg.tracking.champion_if)
    unknown = set(t.lambdas) - set(LAMBDA_NAMES)
    if unknown:
        bad("train.lambdas", f"keys among {', '.join(LAMBDA_NAMES)}", sorted(unknown))
    if t.envelope_band and (len(t.envelope_band) != 2 or not 0 < t.envelope_band[0] < t.envelope_band[1]):
        bad("train.envelope_band", "[low, high] in Hz with 0 < low < high", t.envelope_band)
    for k in ("log_every", "eval_every", "sample_every", "checkpoint_every", "keep_checkpoints"):
        if getattr(t, k) < 1:
            bad(f"train.{k}", "at least 1", getattr(t, k))
    ds = cfg.distill
    if ds.enabled:
        if m.kind != "conv1d":
            bad("distill.enabled", "false unless model.kind = 'conv1d' (a student of the same design)", ds.enabled)
        if ds.widths and (len(ds.widths) != len(m.widths) or any(w < 1 for w in ds.widths)):
            bad("distill.widths", f"{len(m.widths)} positive widths like model.widths (one per rate), or [] for the "
                "teacher's", ds.widths)
        if ds.res_blocks and (len(ds.res_blocks) != len(m.res_blocks) or any(r < 0 for r in ds.res_blocks)):
            bad("distill.res_blocks", f"{len(m.res_blocks)} non-negative counts like model.res_blocks, or [] for the "
                "teacher's", ds.res_blocks)
        if ds.kernel < 0 or (ds.kernel and ds.kernel % 2 == 0):
            bad("distill.kernel", "an odd kernel size, or 0 for the teacher's", ds.kernel)
        for k in ("steps", "batch_size"):
            if getattr(ds, k) < 1:
                bad(f"distill.{k}", "at least 1", getattr(ds, k))
        if ds.lr <= 0:
            bad("distill.lr", "a positive learning rate", ds.lr)


def geometry_of(d: DataConfig) -> str | dict[str, Any]:
    """The data set's bearing as a geometry spec: its numbers from [data.bearing], else the data.geometry name."""
    if not d.bearing.n_balls:
        return d.geometry
    b = d.bearing
    return {"n_balls": b.n_balls, "ball_diameter": b.ball_diameter, "pitch_diameter": b.pitch_diameter,
            "contact_angle_deg": b.contact_angle_deg, "unit": b.unit, "name": "data.bearing"}

