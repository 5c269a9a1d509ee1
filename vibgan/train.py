"""Adversarial training: data preparation, the training state, and the loop.

The loop reads like the algorithm of Goodfellow et al.: for each iteration, k discriminator steps on
m real and m generated segments, then l generator steps; the generator loss may add a spectral term
(per-class log-PSD distance), a kurtosis term, an envelope-spectrum term (defect rates) and a spread
term (diversity), weighted by ``train.lambdas``. Everything that
changes during training lives in one ``TrainState`` that checkpoints as a whole.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vibgan import losses
from vibgan.config import Config, to_dict
from vibgan.data import Recording
from vibgan.errors import ConfigError, DataError, TrainingError
from vibgan.networks import TrainedGenerator, build_models, count_parameters
from vibgan.spectral import IN_BAND

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


# --------------------------------------------------------------------------------------------------
# Data: recordings -> normalised tensors the loop samples random segments from
# --------------------------------------------------------------------------------------------------
@dataclass
class TrainData:
    """Training signals ready for the loop, plus the held-out parts for validation.

    ``signals`` (R, L_max, C) holds each recording's normalised training part (zero-padded), so a batch
    of random segments is one gather: no Python loop over segments, and it lives on the device.
    """

    classes: list[str]
    fs: float
    channels: list[str]
    length: int
    signals: torch.Tensor  # (R, L_max, C) float32, normalised
    lengths: torch.Tensor  # (R,) int64 samples in each training part
    rec_class: torch.Tensor  # (R,) int64
    rec_cond: torch.Tensor  # (R, 2) float32 [rpm, load_hp]
    normalizer: Normalizer | None  # noqa: F821 (vibgan.data.Normalizer)
    train_parts: list[Recording] = field(default_factory=list)  # physical units
    val_parts: list[Recording | None] = field(default_factory=list)  # None where the fraction is 0
    test_parts: list[Recording | None] = field(default_factory=list)
    geometry: str = "6205"
    units: str = "g"
    provenance: dict[str, Any] = field(default_factory=dict)
    # (rank, world): this process samples only window starts in its own 1/world of each recording
    shard: tuple[int, int] = (0, 1)

    def __post_init__(self) -> None:
        # groups: the distinct (class, rpm, load) of the recordings; spectra are matched per group, so a
        # class recorded at two speeds keeps two spectra instead of one average
        keys = [(int(k), *c) for k, c in zip(self.rec_class.tolist(), self.rec_cond.tolist())]
        uniq = sorted(set(keys))
        self.rec_group = torch.tensor([uniq.index(k) for k in keys], dtype=torch.long, device=self.rec_class.device)
        self.group_class = torch.tensor([u[0] for u in uniq], dtype=torch.long, device=self.rec_class.device)
        self.group_cond = torch.tensor([u[1:] for u in uniq], dtype=torch.float32, device=self.rec_class.device)
        per_class = {k: sum(u[0] == k for u in uniq) for k, *_ in uniq}
        self.group_names = [self.classes[k] if per_class[k] == 1 else f"{self.classes[k]}@{rpm:g}rpm"
                            for k, rpm, _ in uniq]

    @property
    def conditions(self) -> dict[str, list[list[float]]]:
        """label -> the distinct [rpm, load_hp] pairs seen in training."""
        out: dict[str, list[list[float]]] = {c: [] for c in self.classes}
        for k, cond in zip(self.rec_class.tolist(), self.rec_cond.tolist()):
            if cond not in out[self.classes[k]]:
                out[self.classes[k]].append(cond)
        return out

    @classmethod
    def from_recordings(cls, recordings: list[Recording], *, length: int, train_fraction: float = 0.7,
                        val_fraction: float = 0.0, classes: list[str] | None = None, normalize: bool = True,
                        geometry: str = "6205") -> TrainData:
        """Split each recording by time, fit the per-class normaliser on the training parts only, pack tensors."""
        from vibgan.data import Normalizer, split_by_time

        if not recordings:
            raise DataError("training data: no recordings were found")
        fs = {r.fs for r in recordings}
        if len(fs) > 1:
            raise DataError(f"training data: recordings have different sampling rates {sorted(fs)} Hz; "
                            "resample them or train one model per rate")
        nch = {r.channels for r in recordings}
        if len(nch) > 1:
            raise DataError(f"training data: recordings have different channel counts {sorted(nch)}")
        labels = sorted({r.label for r in recordings}, key=[r.label for r in recordings].index)
        if classes:
            missing = [c for c in classes if c not in labels]
            if missing:
                raise DataError(f"training data: data.classes asks for {missing}, found only {labels}")
            recordings = [r for r in recordings if r.label in classes]
            labels = list(classes)
        test_fraction = max(0.0, 1.0 - train_fraction - val_fraction)
        parts = [split_by_time(r, (train_fraction, val_fraction, test_fraction)) for r in recordings]
        train_parts = [p[0] for p in parts]
        for p in train_parts:
            if p.samples < length:
                raise DataError(f"{p.meta.get('source', p.label)}: training part has {p.samples} samples, "
                                f"shorter than one segment of {length}; lower data.segment_length or use longer recordings")
        normalizer = Normalizer(per_class=True).fit(train_parts) if normalize else None
        lmax = max(p.samples for p in train_parts)
        sig = np.zeros((len(train_parts), lmax, train_parts[0].channels), dtype=np.float32)
        for i, p in enumerate(train_parts):
            x = p.signal[None]  # (1, C, N)
            if normalizer is not None:
                x = normalizer.transform(x, [p.label])
            sig[i, : p.samples] = np.asarray(x)[0].T
        cond = [[float(p.meta.get("rpm") or 0.0), float(p.meta.get("load_hp") or 0.0)] for p in train_parts]
        sensors = train_parts[0].meta.get("sensor") or [f"ch{i}" for i in range(train_parts[0].channels)]
        return cls(
            classes=labels, fs=float(fs.pop()), channels=list(sensors), length=length,
            signals=torch.from_numpy(sig), lengths=torch.tensor([p.samples for p in train_parts]),
            rec_class=torch.tensor([labels.index(p.label) for p in train_parts]),
            rec_cond=torch.tensor(cond, dtype=torch.float32), normalizer=normalizer,
            train_parts=train_parts, val_parts=[p[1] for p in parts], test_parts=[p[2] for p in parts],
            geometry=geometry, units=str(train_parts[0].meta.get("units", "g")),
            provenance={"recordings": [str(r.meta.get("source", "")) for r in recordings],
                        "fractions": [train_fraction, val_fraction, test_fraction]},
        )

    def to(self, device: torch.device) -> TrainData:
        return dataclasses.replace(self, signals=self.signals.to(device), lengths=self.lengths.to(device),
                                 rec_class=self.rec_class.to(device), rec_cond=self.rec_cond.to(device))

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """n random training segments, classes balanced: x (n, C, T), y (n,), cond (n, 2), group (n,)."""
        rec, start, y = self.draw(n, generator)
        return self.gather(rec, start), y, self.rec_cond[rec], self.rec_group[rec]

    def draw(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Where ``sample``'s n segments come from: recording (n,), start sample (n,) and class (n,)."""
        dev = self.signals.device
        k = len(self.classes)
        y = torch.randint(0, k, (n,), generator=generator, device=dev)
        # a random recording of each drawn class: recordings sorted by class, uniform within the class's run
        order = torch.argsort(self.rec_class, stable=True)  # (R,)
        count = torch.bincount(self.rec_class, minlength=k)  # (K,)
        first = torch.cumsum(count, 0) - count  # (K,)
        u = torch.rand(n, generator=generator, device=dev)
        rec = order[first[y] + (u * count[y]).long().clamp(max=count[y] - 1)]  # (n,)
        span = self.lengths[rec] - self.length + 1  # window starts available in each drawn recording
        r, w = self.shard  # under torchrun, each rank draws starts from its own contiguous share of them
        lo = span * r // w
        width = (span * (r + 1) // w - lo).clamp(min=1)
        start = lo + (torch.rand(n, generator=generator, device=dev) * width.float()).long()  # (n,)
        return rec, start, y

    def gather(self, rec: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Segments (n, C, T) of recordings ``rec`` (n,) from sample ``start`` (n,) of their training parts."""
        idx = start.unsqueeze(1) + torch.arange(self.length, device=start.device)  # (n, T)
        x = self.signals[rec.unsqueeze(1), idx]  # (n, T, C): one gather, no Python loop
        return x.transpose(1, 2).contiguous()

    def group_statistics(self, n_per_group: int = 64, seed: int = 0, envelope_band: tuple[float, float] | None = None,
                         pairwise_spread: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Real per-group mean log-PSD (G, F) in dB, log median kurtosis (G,), the mean relative log
        envelope spectrum (G, F_env) in dB when ``envelope_band`` is given (else None), and the spread (G,) in dB:
        the mean in-band lsd of a segment from its group mean PSD, or with ``pairwise_spread`` between two
        disjoint segments of a group (``losses.pairwise_spread``); all in normalised units."""
        gen = torch.Generator(device=self.signals.device).manual_seed(seed)
        n_groups = len(self.group_names)
        rec, start, _ = self.draw(2 * n_per_group * n_groups, gen)
        x, g = self.gather(rec, start), self.rec_group[rec]
        p = losses.segment_psd(x, self.fs, PSD_NPERSEG)  # (B, F), once for the mean PSD and the spread
        db, _ = losses.group_log_psd(p, g, n_groups)
        kurt = losses.kurtosis(x).mean(dim=1)
        med = torch.stack([kurt[g == i].median() if (g == i).any() else kurt.new_tensor(3.0) for i in range(n_groups)])
        env = None
        if envelope_band is not None:
            env, _ = losses.group_mean(losses.envelope_log_spectrum(x, self.fs, envelope_band)[1], g, n_groups)
        band = psd_band(self.fs, self.length, x.device)
        if not pairwise_spread:
            spread, _ = losses.group_mean(losses.segment_lsd(p, db, g, band).unsqueeze(-1), g, n_groups)
            return db, torch.log(med), env, spread[:, 0]
        # pairs of overlapping windows (near-copies) would understate the variety: only disjoint pairs count
        apart = (rec.unsqueeze(0) != rec.unsqueeze(1)) | ((start.unsqueeze(0) - start.unsqueeze(1)).abs() >= self.length)
        spread = torch.stack([losses.pairwise_spread(p[g == i], g[g == i] * 0, 1, band, apart[g == i][:, g == i])[0][0]
                              for i in range(n_groups)])  # one group at a time: (n, n) distances, not (B, B)
        return db, torch.log(med), env, spread


#: Welch segment length of the training-time PSDs (DESIGN.md's lsd uses 256); shorter segments use their length.
PSD_NPERSEG = 256


def psd_band(fs: float, length: int, device: torch.device | str = "cpu", nperseg: int = PSD_NPERSEG) -> torch.Tensor:
    """The in-band bins (0 < f <= 0.45 fs) of a Welch PSD of ``nperseg`` (or ``length``) samples: (F,) bool."""
    freqs = torch.fft.rfftfreq(min(nperseg, length), 1.0 / fs).to(device)
    return (freqs > 0) & (freqs <= IN_BAND * fs)


def load_recordings(cfg: Config) -> list[Recording]:
    """The recordings a config names: simulated bearings, files on disk, or the seed sinusoids."""
    d = cfg.data
    if d.source == "simulated":
        from vibgan.synthetic import simulate_dataset

        s = d.simulate
        return simulate_dataset(faults=tuple(s.faults), rpms=tuple(s.rpms), fs=d.fs, duration=s.duration_s,
                                severity=s.severity, seed=s.seed, load_hp=s.load_hp, channels=len(d.channels))
    if d.source == "files":
        from vibgan.data import load_many

        path = Path(d.path)
        if not path.exists():
            raise ConfigError(f"data.path = {d.path!r}: no such file or directory")
        return load_many(path, channels=d.channels or None, classes=d.classes or None)
    raise ConfigError(f"data.source = {d.source!r}: load_recordings reads simulated or files; "
                      "use prepare_data for sinusoids")


def prepare_data(cfg: Config) -> TrainData:
    """Load, split by time, normalise and pack the data a config names."""
    d = cfg.data
    if d.source == "sinusoid":
        from vibgan.synthetic import sinusoids

        n_test = max(256, d.n_sinusoids // 4)
        y = sinusoids(d.n_sinusoids + n_test, length=d.segment_length, seed=cfg.train.seed)
        fs = (d.segment_length - 1) / 10.0  # samples per unit of x on [-5, 5]
        train = [Recording(y[i][None], fs, {"label": "sinusoid", "source": "sinusoids"}) for i in range(d.n_sinusoids)]
        test = [Recording(y[i][None], fs, {"label": "sinusoid", "source": "sinusoids"}) for i in range(d.n_sinusoids, len(y))]
        td = TrainData(
            classes=["sinusoid"], fs=fs, channels=["y"], length=d.segment_length,
            signals=torch.from_numpy(np.ascontiguousarray(y[: d.n_sinusoids, :, None])),
            lengths=torch.full((d.n_sinusoids,), d.segment_length), rec_class=torch.zeros(d.n_sinusoids, dtype=torch.long),
            rec_cond=torch.zeros(d.n_sinusoids, 2), normalizer=None, train_parts=train[:16], test_parts=test[:16],
            units="1", provenance={"source": "sinusoids", "n": d.n_sinusoids, "seed": cfg.train.seed},
        )
        return td
    if d.lazy:
        from vibgan.lazy import LazyTrainData

        if not Path(d.path).is_file():
            raise ConfigError(f"data.path = {d.path!r}: no such file (data.lazy reads one HDF5 recordings file)")
        return LazyTrainData.from_hdf5(d.path, length=d.segment_length, train_fraction=d.train_fraction,
                                       val_fraction=d.val_fraction, classes=d.classes or None, geometry=d.geometry)
    recs = load_recordings(cfg)
    return TrainData.from_recordings(recs, length=d.segment_length, train_fraction=d.train_fraction,
                                     val_fraction=d.val_fraction, classes=d.classes or None, geometry=d.geometry)


# --------------------------------------------------------------------------------------------------
# Training state and checkpoints
# --------------------------------------------------------------------------------------------------
@dataclass
class TrainState:
    """Everything that changes during training; checkpoints as a whole."""

    G: torch.nn.Module
    D: torch.nn.Module
    G_ema: torch.nn.Module
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    gen: torch.Generator  # data sampling and latent noise
    scaler: Any = None
    step: int = 0
    rollbacks: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {
            "G": self.G.state_dict(), "D": self.D.state_dict(), "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else {},
            "step": self.step, "rollbacks": self.rollbacks, "history": self.history,
        }

    def load_state_dict(self, sd: dict) -> None:
        self.G.load_state_dict(TrainedGenerator.with_optional_buffers(self.G, sd["G"]))
        self.D.load_state_dict(sd["D"])
        self.G_ema.load_state_dict(TrainedGenerator.with_optional_buffers(self.G_ema, sd["G_ema"]))
        self.opt_g.load_state_dict(sd["opt_g"])
        self.opt_d.load_state_dict(sd["opt_d"])
        self.gen.set_state(sd["gen"])
        torch.set_rng_state(sd["torch_rng"])
        if self.scaler is not None and sd.get("scaler"):
            self.scaler.load_state_dict(sd["scaler"])
        self.step = int(sd["step"])
        self.rollbacks = int(sd.get("rollbacks", 0))
        self.history = {k: list(v) for k, v in sd["history"].items()}


def save_checkpoint(state: TrainState, directory: Path, extra: dict, keep: int,
                    rank_gens: list[torch.Tensor] | None = None) -> Path:
    """Write ``ckpt_<step>.pt`` atomically (temp file + rename) and keep the newest ``keep``.

    ``rank_gens``: under torchrun, every rank's sampling RNG state, so a resumed job continues each
    rank's stream where it stopped.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"ckpt_{state.step:08d}.pt"
    tmp = directory / f".{path.name}.tmp"
    payload = {**state.state_dict(), "extra": json.dumps(extra)}
    if rank_gens is not None:
        payload["gen_ranks"] = [g.cpu() for g in rank_gens]
    try:
        torch.save(payload, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TrainingError(f"checkpoint {path}: could not be written ({e.strerror or e}); "
                            f"the previous checkpoint in {directory} is intact") from None
    for old in sorted(directory.glob("ckpt_*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def set_aside_checkpoints(directory: Path) -> Path | None:
    """Before a fresh run's (no --resume) first checkpoint: move another run's checkpoints in ``directory``
    into ``previous/`` inside it, replacing what an older run left there (reruns of an unattended job take
    bounded space). Left in place, the old files would sort after the new run's early checkpoints, so
    pruning would delete the new ones and --resume after a crash would continue the old run. The files go
    to a temporary folder first, which then replaces ``previous/`` by renames only, so a kill leaves every
    checkpoint of the old run in one folder. Returns ``previous/``, or None when there was nothing."""
    import shutil

    directory = Path(directory)
    found = sorted(directory.glob("ckpt_*.pt"))
    if not found:
        return None
    dest, tmp, old = directory / "previous", directory / ".previous.tmp", directory / ".previous.old"
    for stale in (tmp, old):  # left by a kill during an earlier set-aside
        if stale.exists():
            shutil.rmtree(stale)
    tmp.mkdir()
    for p in found:
        os.replace(p, tmp / p.name)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest complete checkpoint in ``directory`` (temp files are ignored)."""
    found = sorted(Path(directory).glob("ckpt_*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint with ``weights_only=True``: tensors and plain values only, never code."""
    from vibgan.errors import ModelError

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        first = (str(e).splitlines() or [""])[0][:200]  # EOFError() of a truncated file has no message
        raise ModelError(f"checkpoint {path}: refused or unreadable ({type(e).__name__}: {first})") from None


# --------------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What a training run leaves behind."""

    out_dir: Path
    generator_dir: Path
    generator: TrainedGenerator
    steps: int
    wall_s: float
    history: dict[str, list[float]]
    lsd_db: dict[str, float]
    device: str
    checkpoint: Path | None = None
    artifacts: list[Path] = field(default_factory=list)
    ranks: int = 1  # processes that trained it (torchrun)
    fingerprints: list[str] = field(default_factory=list)  # per rank, of the final generator weights


def pick_device(name: str) -> torch.device:
    """The device, chosen once: ``auto`` takes CUDA when present, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = {name!r}: CUDA is not available on this machine; use auto or cpu")
    return dev


def _finite_grads(params) -> bool:
    grads = [p.grad for p in params if p.grad is not None]
    return bool(torch.isfinite(torch.stack([g.float().abs().sum() for g in grads]).sum())) if grads else True


def train(cfg: Config, data: TrainData, tracker=None, *, resume: bool = False, hooks: dict | None = None) -> TrainResult:
    """Train a GAN on ``data`` as ``cfg`` says; log through ``tracker``; return the trained generator.

    ``hooks`` (tests and fault injection): ``{"after_step": fn(state)}`` is called after each iteration.
    """
    from vibgan import distributed
    from vibgan.tracking import NullTracker

    ctx = distributed.context()
    tracker = tracker if (tracker is not None and ctx.is_main) else NullTracker()  # rank 0 alone logs
    hooks = hooks or {}
    t_cfg = cfg.train
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    try:  # an unusable output directory is an error before any work, not a traceback at the first checkpoint
        ckpt_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TrainingError(f"output directory {out}: cannot create {ckpt_dir} ({e.strerror or e}); "
                            "choose another --out") from None
    device = distributed.device_for(ctx, pick_device(t_cfg.device))
    if t_cfg.threads:
        torch.set_num_threads(t_cfg.threads)
    amp_dtype = PRECISIONS[t_cfg.precision]
    torch.manual_seed(t_cfg.seed)

    data = data.to(device)
    k_classes, n_ch, T = len(data.classes), len(data.channels), data.length
    G, D = build_models(cfg.model, n_classes=k_classes, channels=n_ch, length=T, fs=data.fs, geometry=data.geometry)
    G, D = G.to(device), D.to(device)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    G_fwd, D_fwd = G, D  # what the training steps call: DDP wrappers under torchrun (gradients averaged)
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        G_fwd, D_fwd = DDP(G, device_ids=ids), DDP(D, device_ids=ids)  # broadcasts rank 0's weights
    # the equaliser's few log-gains, the per-class phase projections and the impulse path are well conditioned:
    # larger steps (each its own learning rate)
    eq_params = list(G.eq.parameters()) if getattr(G, "eq", None) is not None else []
    phase_params = list(G.phase_proj.parameters()) if getattr(G, "phase_inputs", False) else []
    impulse_params = list(G.impulse.parameters()) if getattr(G, "impulse", None) is not None else []
    own = {id(p) for p in eq_params + phase_params + impulse_params}
    groups = [{"params": [p for p in G.parameters() if id(p) not in own], "lr": t_cfg.lr_g}]
    if eq_params:
        groups.append({"params": eq_params, "lr": t_cfg.lr_eq})
    if phase_params:
        groups.append({"params": phase_params, "lr": t_cfg.lr_phase})
    if impulse_params:
        groups.append({"params": impulse_params, "lr": t_cfg.lr_impulse})
    opt_g = torch.optim.Adam(groups, lr=t_cfg.lr_g, betas=tuple(t_cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=t_cfg.lr_d, betas=tuple(t_cfg.betas))
    scaler = torch.amp.GradScaler(device.type) if amp_dtype is torch.float16 else None
    rank_seed = t_cfg.seed + 1_000_003 * ctx.rank  # each rank draws its own batches and noise
    gen = torch.Generator(device=device).manual_seed(rank_seed)
    state = TrainState(G, D, G_ema, opt_g, opt_d, gen, scaler)

    extra = {"config": to_dict(cfg), "classes": data.classes,
             "normalizer": data.normalizer.to_dict() if data.normalizer is not None else None}
    if resume:
        found = latest_checkpoint(ckpt_dir)
        if found is None:
            aside = " (an earlier run's are in previous/: move them back to continue it)" \
                if any((ckpt_dir / "previous").glob("ckpt_*.pt")) else ""
            raise TrainingError(f"--resume: no checkpoint in {ckpt_dir}{aside}; start without --resume")
        sd = load_checkpoint(found)
        saved = json.loads(sd.get("extra", "{}"))
        if saved.get("classes") != data.classes:
            raise TrainingError(f"--resume: checkpoint {found} was trained on classes {saved.get('classes')}, "
                                f"the data now has {data.classes}")
        try:
            state.load_state_dict(sd)
        except (RuntimeError, ValueError, KeyError) as e:  # another architecture or optimiser layout
            first = (str(e).splitlines() or [""])[0][:300]
            raise TrainingError(f"--resume: checkpoint {found} does not fit the model this config builds (was the "
                                f"[model] section changed since that run? {type(e).__name__}: {first}); start "
                                "without --resume, or with the config of that run") from None
        if ctx.enabled:
            gens = sd.get("gen_ranks") or []
            if len(gens) == ctx.world:
                state.gen.set_state(gens[ctx.rank])
            else:  # another number of processes: each rank starts a fresh stream from the step
                state.gen.manual_seed(rank_seed + state.step)
        if ctx.is_main:
            print(f"resumed from {found} at step {state.step}")
    set_aside = not resume and ctx.is_main  # an earlier run's checkpoints move away at this run's first save

    d_loss_fn, g_loss_fn = losses.ADVERSARIAL[t_cfg.loss]
    lam = {"adv": 1.0, "spectral": 0.0, "kurtosis": 0.0, "envelope": 0.0, "spread": 0.0, **t_cfg.lambdas}
    env_band = (float(t_cfg.envelope_band[0]), min(float(t_cfg.envelope_band[1]), IN_BAND * data.fs))
    if lam["envelope"] and env_band[0] >= env_band[1]:
        raise TrainingError(f"train.envelope_band {t_cfg.envelope_band} Hz lies above the signal band "
                            f"(fs = {data.fs:g} Hz); lower it or set train.lambdas.envelope = 0")
    real_db, real_logk, real_env, real_spread = data.group_statistics(  # (G, F) dB, (G,), (G, F_env) dB, (G,) dB
        seed=t_cfg.seed + 7, envelope_band=env_band if lam["envelope"] else None, pairwise_spread=t_cfg.spread_pairwise)
    n_groups = len(data.group_names)
    # the training batches come from this rank's shard; the targets above and evaluation use all the data
    shard = dataclasses.replace(data, shard=(ctx.rank, ctx.world)) if ctx.enabled else data
    band = psd_band(data.fs, T, device)
    eval_gen_seed = t_cfg.seed + 12345

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    def critic(x, y, c):
        with autocast():
            return D_fwd(x, y, c)

    last_good = copy.deepcopy(state.state_dict())
    last_good_step = state.step

    def rollback(reason: str) -> None:
        nonlocal last_good_step
        state.rollbacks += 1
        if state.rollbacks > t_cfg.max_rollbacks:
            raise TrainingError(f"training stopped at step {state.step}: {reason}, still after "
                                f"{t_cfg.max_rollbacks} rollbacks; lower train.lr_g/lr_d or use precision fp32. "
                                f"Checkpoints in {ckpt_dir} are intact")
        rng = state.gen.get_state()  # keep drawing fresh batches, or the same batch would fail again
        rollbacks = state.rollbacks
        state.load_state_dict(last_good)
        state.gen.set_state(rng)
        state.rollbacks = rollbacks
        tracker.log_metrics({"train/rollback": float(rollbacks)}, step=state.step)
        print(f"warning: {reason}; rolled back to step {last_good_step} (rollback {rollbacks}/{t_cfg.max_rollbacks})")

    def apply(loss: torch.Tensor, opt: torch.optim.Optimizer, params) -> bool:
        """Backward and step unless the loss or a gradient is not finite; returns whether it stepped."""
        opt.zero_grad(set_to_none=True)
        if not distributed.all_finite(bool(torch.isfinite(loss)), device):  # all ranks skip together
            return False
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(opt)  # the scaler skips steps with inf/nan gradients itself
            scaler.update()
            return True
        loss.backward()
        if not _finite_grads(params):
            opt.zero_grad(set_to_none=True)
            return False
        opt.step()
        return True

    tracker.log_params({"model/params_g": count_parameters(G), "model/params_d": count_parameters(D),
                        "device": str(device)})
    t0 = time.perf_counter()
    start_step = state.step
    bar = _progress(t_cfg.steps, state.step, enabled=t_cfg.progress and ctx.is_main)
    B = t_cfg.batch_size
    while state.step < t_cfg.steps:
        # ---- k discriminator steps on m real and m generated segments
        for _ in range(t_cfg.d_steps):
            x_real, y, c, _ = shard.sample(B, state.gen)  # (B, C, T), (B,), (B, 2)
            with torch.no_grad(), autocast():
                x_fake = G_fwd(G.sample_latent(B, T, state.gen, device), y, c)  # (B, C, T)
            loss_d = d_loss_fn(critic(x_real, y, c), critic(x_fake.float(), y, c))
            if t_cfg.loss == "wgan-gp":
                loss_d = loss_d + t_cfg.gp_weight * losses.gradient_penalty(
                    lambda xh, y=y, c=c: critic(xh, y, c), x_real, x_fake.float(), state.gen)
            ok_d = apply(loss_d, opt_d, D.parameters())
        # ---- l generator steps
        for _ in range(t_cfg.g_steps):
            _, y, c, grp = shard.sample(B, state.gen)
            with autocast():
                x_fake = G_fwd(G.sample_latent(B, T, state.gen, device), y, c)
            x_fake = x_fake.float()  # spectral maths in float32, never half
            loss_adv = g_loss_fn(critic(x_fake, y, c))
            loss_g = lam["adv"] * loss_adv
            loss_spec = loss_k = loss_env = loss_spread = torch.zeros((), device=device)
            if lam["spectral"] or lam["spread"]:
                p_fake = losses.segment_psd(x_fake, data.fs, PSD_NPERSEG)  # (B, F), shared by both terms
            if lam["spectral"]:
                fake_db, present = losses.group_log_psd(p_fake, grp, n_groups)
                loss_spec = losses.spectral_loss(fake_db, real_db, present, band)
                loss_g = loss_g + lam["spectral"] * loss_spec
            if lam["kurtosis"]:
                loss_k = losses.kurtosis_loss(x_fake, grp, real_logk, n_groups)
                loss_g = loss_g + lam["kurtosis"] * loss_k
            if lam["envelope"]:
                fake_env, present = losses.group_mean(
                    losses.envelope_log_spectrum(x_fake, data.fs, env_band)[1], grp, n_groups)
                loss_env = losses.envelope_loss(fake_env, real_env, present)
                loss_g = loss_g + lam["envelope"] * loss_env
            if lam["spread"]:
                loss_spread = losses.spread_loss(p_fake, grp, real_db, real_spread, n_groups, band,
                                                  pairwise=t_cfg.spread_pairwise)
                loss_g = loss_g + lam["spread"] * loss_spread
            ok_g = apply(loss_g, opt_g, G.parameters())

        if not (ok_d and ok_g):
            rollback(f"non-finite loss or gradient (loss/d={loss_d.item():.4g}, loss/g={loss_g.item():.4g})")
            continue
        with torch.no_grad():  # EMA of the generator weights, used for sampling
            decay = min(t_cfg.ema_decay, (1 + state.step) / (10 + state.step))
            for pe, p in zip(G_ema.parameters(), G.parameters()):
                pe.lerp_(p, 1 - decay)
            for be, b in zip(G_ema.buffers(), G.buffers()):
                be.copy_(b)
        state.step += 1

        if state.step % t_cfg.log_every == 0 or state.step == t_cfg.steps:
            scalars = {"loss/d": loss_d.item(), "loss/g": loss_g.item(), "loss/g_adv": loss_adv.item(),
                       "loss/spectral": loss_spec.item(), "loss/kurtosis": loss_k.item(),
                       "loss/envelope": loss_env.item(), "loss/spread": loss_spread.item()}
            for name, v in scalars.items():
                state.history.setdefault(name, []).append(v)
            state.history.setdefault("step", []).append(state.step)
            tracker.log_metrics(scalars, step=state.step)
            bar.set_postfix({"d": f"{scalars['loss/d']:.3f}", "g": f"{scalars['loss/g']:.3f}",
                             "spec": f"{scalars['loss/spectral']:.2f}"})
        if ctx.is_main and (state.step % t_cfg.eval_every == 0 or state.step == t_cfg.steps):
            g_eval = copy.deepcopy(G_ema)
            calibrate_equalizer(g_eval, data, eval_gen_seed)  # what export would produce at this step
            lsd = evaluate_lsd(g_eval, data, real_db, band, eval_gen_seed)
            tracker.log_metrics({f"fid/lsd_db/{k}": v for k, v in lsd.items()} | {"fid/lsd_db_max": max(lsd.values())},
                                step=state.step)
            state.history.setdefault("eval_step", []).append(state.step)
            state.history.setdefault("lsd_db_max", []).append(max(lsd.values()))
            state.history.setdefault("wall_s", []).append(time.perf_counter() - t0)
        if ctx.is_main and (state.step % t_cfg.sample_every == 0 or state.step == t_cfg.steps):
            png = plot_samples(g_eval if state.step % t_cfg.eval_every == 0 else G_ema, data, out / "samples" / f"step_{state.step:08d}.png", eval_gen_seed, state.step)
            tracker.log_artifact(png, "samples")
        if state.step % t_cfg.checkpoint_every == 0 or state.step == t_cfg.steps:
            rank_gens = distributed.gather_objects(state.gen.get_state()) if ctx.enabled else None
            if ctx.is_main:  # rank 0 alone writes
                if set_aside and (moved := set_aside_checkpoints(ckpt_dir)) is not None:
                    print(f"{ckpt_dir} held an earlier run's checkpoints: moved to {moved} (to continue that run "
                          f"instead, move them back into {ckpt_dir} and start with --resume)")
                set_aside = False
                save_checkpoint(state, ckpt_dir, extra, t_cfg.keep_checkpoints, rank_gens)
            last_good = copy.deepcopy(state.state_dict())
            last_good_step = state.step
        bar.update(1)
        if "after_step" in hooks:
            hooks["after_step"](state)
    bar.close()
    wall = time.perf_counter() - t0

    fingerprints = distributed.gather_objects(distributed.fingerprint(G_ema))  # one per rank
    if len(set(fingerprints)) > 1:
        raise TrainingError(f"the {ctx.world} ranks ended with different generator weights ({fingerprints}); "
                            "this is a bug: please report it with the config")
    g_final = copy.deepcopy(G_ema)
    t_variety = time.perf_counter()
    variety = calibrate_variety(g_final, data, eval_gen_seed)  # model.variety: per-class knobs, before the equaliser
    t_variety = time.perf_counter() - t_variety
    calibrate_equalizer(g_final, data, eval_gen_seed)
    if variety and ctx.is_main:
        tracker.log_params({f"variety/{lab}/{k}": v[k] for lab, v in variety.items()
                            for k in ("temperature", "slip_scale", "segment_gain_db", "impulse_gain") if k in v})
        print(f"variety calibration on the training part ({t_variety:.0f} s): " + ", ".join(
            f"{lab} T={v['temperature']:g} slip x{v['slip_scale']:g} gain={v['segment_gain_db']:g} dB "
            + (f"impacts x{v['impulse_gain']:g} " if "impulse_gain" in v else "")
            + f"(spread x{v['spread_ratio']:.2f}, kurtosis x{v['kurtosis_ratio']:.2f})" for lab, v in variety.items()))
    if not ctx.is_main:  # the other ranks return the same generator, unsaved
        trained = TrainedGenerator(g_final.cpu(), data.normalizer, generator_meta(cfg, data))
        return TrainResult(out, out / "generator", trained, state.step, wall, state.history, {}, str(device),
                           None, [], ctx.world, fingerprints)
    lsd = evaluate_lsd(g_final, data, real_db, band, eval_gen_seed)
    trained = TrainedGenerator(g_final.cpu(), data.normalizer, generator_meta(cfg, data))
    from safetensors import SafetensorError

    try:
        gen_dir = trained.save(out / "generator")
    except (OSError, SafetensorError) as e:  # safetensors reports a full disk as SafetensorError
        raise TrainingError(f"generator {out / 'generator'}: could not be written ({e}); the checkpoints in "
                            f"{ckpt_dir} are intact: free space, then rerun with --resume") from None
    curves = plot_losses(state.history, out / "loss_curves.png")
    tracker.log_artifact(curves, "plots")
    steps_run = state.step - start_step
    tracker.log_metrics({"train/steps_per_s": steps_run / wall if wall > 0 else 0.0, "train/wall_s": wall},
                        step=state.step)
    return TrainResult(out, gen_dir, trained, state.step, wall, state.history, lsd, str(device),
                       latest_checkpoint(ckpt_dir), [curves], ctx.world, fingerprints)


def generator_meta(cfg: Config, data: TrainData) -> dict:
    """What a saved generator needs besides its weights (JSON-serialisable)."""
    import vibgan

    return {
        "format": "vibgan-generator/1", "vibgan_version": vibgan.__version__,
        "model": to_dict(cfg)["model"], "classes": data.classes, "fs": data.fs, "channels": data.channels,
        "length": data.length, "units": data.units, "geometry": data.geometry, "conditions": data.conditions,
        "seed": cfg.train.seed, "steps": cfg.train.steps, "loss": cfg.train.loss,
    }


#: Segments per forward pass in ``generate``: on a CPU, batches of a few dozen keep the activations in cache
#: (hundreds at once ran 4x slower per segment on the 2-core machine)
GENERATE_CHUNK = 32


def generate(G: torch.nn.Module, latent: tuple[torch.Tensor, ...], y: torch.Tensor, cond: torch.Tensor,
             chunk: int = GENERATE_CHUNK) -> torch.Tensor:
    """G's output (B, C, T) in float32 for a latent batch of any size, computed ``chunk`` segments at a time."""
    return torch.cat([G(tuple(part[a: a + chunk] for part in latent), y[a: a + chunk], cond[a: a + chunk]).float()
                      for a in range(0, len(y), chunk)])


@torch.no_grad()
def calibrate_equalizer(G: torch.nn.Module, data: TrainData, seed: int, iters: int = 3, n_per_group: int = 32) -> None:
    """Set the equalizer gains of ``G`` (in place) so each class's mean PSD meets the real one.

    The equalizer is linear, so the correction is closed-form: add (dB_real - dB_generated) / 20 in
    log-amplitude per frequency, a few times because the FIR window smooths the gains. Used on the EMA
    generator, whose body lags behind the live equalizer it was trained with.
    """
    eq = getattr(G, "eq", None)
    if eq is None or data.length < eq.n_fft:
        return
    device = data.signals.device
    k = len(data.classes)
    real, ry, _, _ = data.sample(64 * k, torch.Generator(device=device).manual_seed(seed + 3))
    real_db, _ = losses.class_log_psd(real, ry, k, data.fs, nperseg=eq.n_fft)  # (K, n_fft//2 + 1)
    n_groups = len(data.group_names)
    g = torch.arange(n_groups, device=device).repeat_interleave(n_per_group)
    y, c = data.group_class.to(device)[g], data.group_cond.to(device)[g]
    for i in range(iters):
        gen = torch.Generator(device=device).manual_seed(seed + 10 + i)
        x = generate(G, G.sample_latent(len(g), data.length, gen, device), y, c)
        fake_db, present = losses.class_log_psd(x, y, k, data.fs, nperseg=eq.n_fft)
        step = (real_db - fake_db) * (math.log(10) / 20)
        eq.log_gain[present] += step[present].to(eq.log_gain.dtype)


#: calibrate_variety's grids: noise temperatures, speed-slip scales, segment-gain sizes in dB (RMS over
#: frequency, per unit of the segment's gain latent) and impulse-path gains (used only with model.impulse_taps)
VARIETY_GRIDS = {"temperature": (0.7, 1.0, 1.4, 2.0, 2.8), "slip_scale": (0.0, 0.25, 0.5, 1.0),
                 "segment_gain_db": (0.0, 0.75, 1.5, 2.25, 3.0), "impulse_gain": (0.7, 1.0, 1.4, 2.0, 2.8)}


def variety_modes(data: TrainData, seed: int, n_fft: int, n_per_class: int = 128) -> torch.Tensor:
    """Each class's main mode of segment-to-segment spectral variation in the real training windows: the first
    principal component of the windows' log-PSDs (``n_fft``-point Welch, in dB, minus their group's mean),
    scaled to an RMS of 1 dB over frequency: (K, n_fft // 2 + 1). A class whose windows differ mostly in the
    level of its fault band (an intermittent ball fault) gets that band."""
    gen = torch.Generator(device=data.signals.device).manual_seed(seed)
    n_groups, k = len(data.group_names), len(data.classes)
    rec, start, y = data.draw(n_per_class * k, gen)
    p = losses.segment_psd(data.gather(rec, start), data.fs, n_fft)  # (N, F)
    g = data.rec_group[rec]
    db = losses.power_db(p)
    mean_db, _ = losses.group_mean(db, g, n_groups)
    # deviations from the group mean (so speeds do not count as variety), in band only: like lsd_db, the mode
    # ignores the anti-alias roll-off, where tiny powers swing by many dB; out of band the mode is zero
    band = psd_band(data.fs, n_fft, p.device, nperseg=n_fft)
    dev = (db - mean_db[g]).double()[:, band]  # (N, F_band)
    modes = torch.zeros(k, p.shape[1], dtype=torch.float64, device=p.device)
    for c in range(k):
        d = dev[y == c]
        if len(d) >= 2:
            v = torch.linalg.svd(d - d.mean(dim=0), full_matrices=False).Vh[0]  # (F_band,), unit norm
            modes[c, band] = v * math.sqrt(len(v))
    return modes.float()


@torch.no_grad()
def local_spread(data: TrainData, seed: int, n_per_half: int = 64) -> torch.Tensor:
    """Per group: the spread (DESIGN.md metric 7: mean lsd_db of a window's PSD from the set's mean PSD) of the
    windows of each half of each recording's training part, from that half's own mean, averaged: (G,) dB.

    The spread of a drifting recording grows with the stretch its windows come from (on CWRU ball 14 the
    whole training part scores 2.85 dB, its halves 2.1-2.2 dB, the held-out 30 % 1.8 dB); a half is about as
    long as a held-out part, so this is the variety a generated set is judged against. For a stationary
    recording it equals the spread of the whole part.
    """
    gen = torch.Generator(device=data.signals.device).manual_seed(seed)
    n_rec, dev = len(data.lengths), data.signals.device
    band = psd_band(data.fs, data.length, dev)
    span = data.lengths - data.length + 1  # (R,) window starts in each training part
    totals = torch.zeros(len(data.group_names), device=dev)
    counts = torch.zeros(len(data.group_names), device=dev)
    for half in (0, 1):
        rec = torch.arange(n_rec, device=dev).repeat_interleave(n_per_half)
        lo, width = span[rec] * half // 2, (span[rec] // 2).clamp(min=1)
        start = lo + (torch.rand(len(rec), generator=gen, device=dev) * width.float()).long()
        p = losses.segment_psd(data.gather(rec, start), data.fs, PSD_NPERSEG)  # (R * n, F)
        mean_db, _ = losses.group_log_psd(p, rec, n_rec)  # (R, F): each recording half's own mean
        d = losses.segment_lsd(p, mean_db, rec, band).view(n_rec, n_per_half).mean(dim=1)  # (R,)
        totals.index_add_(0, data.rec_group, d / math.sqrt(1 - 1 / n_per_half))
        counts.index_add_(0, data.rec_group, torch.ones_like(d))
    return totals / counts.clamp(min=1)


@torch.no_grad()
def calibrate_variety(G: torch.nn.Module, data: TrainData, seed: int, n_per_group: int = 48, rounds: int = 2,
                      grids: dict[str, tuple[float, ...]] | None = None) -> dict[str, dict[str, float]]:
    """Fit each class's variety knobs (``model.variety``, in place) on the training part: the noise temperature,
    the speed-slip scale, the size of the segment gain along the class's main mode (``variety_modes``) and,
    with an impulse path, the gain of its deterministic impacts against the network's noise-driven output.

    Targets, per (class, speed) group of the real training windows: the spread at the time scale of a
    held-out part (``local_spread``) and the median kurtosis. Coordinate descent over the
    ``grids`` (default ``VARIETY_GRIDS``), ``rounds`` times: each value of one knob is tried for all classes at
    once (the others at each class's current choice), the equaliser is calibrated for it (``calibrate_equalizer``)
    and each class keeps its best value. The score of a class: squared log-ratios of spread and of median
    kurtosis, the squared lsd from the training PSD in units of 1.5 dB, and small costs for moving away from
    the trained network (so a knob moves only where the data asks for it). The same noise serves every
    candidate. The equaliser is left as it was: calibrate it afterwards. Returns label -> the chosen values and
    the predicted spread and kurtosis ratios and lsd_db.
    """
    if not getattr(G, "variety", False):
        return {}
    grids = {**VARIETY_GRIDS, **(grids or {})}
    device = data.signals.device
    k, n_groups = len(data.classes), len(data.group_names)
    real_db, real_logk, _, _ = data.group_statistics(seed=seed + 1)  # (G, F) dB, (G,)
    real_spread = local_spread(data, seed + 3)  # (G,) dB
    modes = variety_modes(data, seed + 2, G.eq.n_fft).to(device)  # (K, F), 1 dB RMS
    band = psd_band(data.fs, data.length, device)
    g = torch.arange(n_groups, device=device).repeat_interleave(n_per_group)
    y, c = data.group_class.to(device)[g], data.group_cond.to(device)[g]
    group_class = data.group_class.to(device)
    base_gain = G.eq.log_gain.detach().clone()
    db_to_log = math.log(10) / 20

    def evaluate(knobs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        G.eq.log_gain.copy_(base_gain)
        G.temperature.copy_(knobs["temperature"])
        G.slip_scale.copy_(knobs["slip_scale"])
        G.segment_mode.copy_(modes * (knobs["segment_gain_db"] * db_to_log).unsqueeze(-1))
        if "impulse_gain" in knobs:
            G.impulse_gain.copy_(knobs["impulse_gain"])
        calibrate_equalizer(G, data, seed)
        gen = torch.Generator(device=device).manual_seed(seed + 5)
        x = generate(G, G.sample_latent(len(g), data.length, gen, device), y, c)  # (G * n, C, T)
        p = losses.segment_psd(x, data.fs, PSD_NPERSEG)
        fake_db, _ = losses.group_log_psd(p, g, n_groups)
        # the distance to a mean of n segments understates the spread by about sqrt(1 - 1/n)
        spread = losses.group_mean(losses.segment_lsd(p, fake_db, g, band).unsqueeze(-1), g, n_groups)[0][:, 0]
        spread = spread / math.sqrt(1 - 1 / n_per_group)
        kurt = losses.kurtosis(x).mean(dim=1).view(n_groups, n_per_group).median(dim=1).values
        lsd = torch.sqrt(((fake_db - real_db)[:, band] ** 2).mean(dim=1))
        r_spread, r_kurt = torch.log(spread / real_spread), torch.log(kurt) - real_logk
        score = r_spread**2 + r_kurt**2 + (lsd / 1.5) ** 2  # (G,)
        score = losses.group_mean(score.unsqueeze(-1), group_class, k)[0][:, 0]  # (K,) mean over a class's groups
        cost = (0.05 * torch.log(knobs["temperature"]) ** 2 + 0.02 * (1 - knobs["slip_scale"]) ** 2
                + 0.01 * knobs["segment_gain_db"] ** 2)
        if "impulse_gain" in knobs:
            cost = cost + 0.05 * torch.log(knobs["impulse_gain"]) ** 2
        return score + cost, {"spread_ratio": r_spread.exp(), "kurtosis_ratio": r_kurt.exp(), "lsd_db": lsd}

    knobs = {"temperature": torch.ones(k, device=device), "slip_scale": torch.ones(k, device=device),
             "segment_gain_db": torch.zeros(k, device=device)}
    if hasattr(G, "impulse_gain"):
        knobs["impulse_gain"] = torch.ones(k, device=device)
    else:
        grids.pop("impulse_gain", None)
    for _ in range(rounds):
        for name, grid in grids.items():
            tried = []
            for v in grid:
                trial = {**knobs, name: torch.full((k,), float(v), device=device)}
                tried.append(evaluate(trial)[0])
            best = torch.stack(tried).argmin(dim=0)  # (K,)
            knobs[name] = torch.tensor(grid, device=device, dtype=torch.float32)[best]
    _, stats = evaluate(knobs)
    G.eq.log_gain.copy_(base_gain)
    chosen: dict[str, dict[str, float]] = {}
    for ci, label in enumerate(data.classes):
        mine = (data.group_class == ci).nonzero().flatten().tolist()
        chosen[label] = {**{n: float(v[ci]) for n, v in knobs.items()},
                         "spread_ratio": float(stats["spread_ratio"][mine].mean()),
                         "kurtosis_ratio": float(stats["kurtosis_ratio"][mine].mean()),
                         "lsd_db": float(stats["lsd_db"][mine].max())}
    return chosen


@torch.no_grad()
def evaluate_lsd(G: torch.nn.Module, data: TrainData, real_db: torch.Tensor, band: torch.Tensor, seed: int,
                 n_per_group: int = 32) -> dict[str, float]:
    """In-band log-spectral distance (dB) per group between fixed-noise samples and the real training PSD."""
    device = data.signals.device
    gen = torch.Generator(device=device).manual_seed(seed)
    n_groups = len(data.group_names)
    g = torch.arange(n_groups, device=device).repeat_interleave(n_per_group)
    y, c = data.group_class.to(device)[g], data.group_cond.to(device)[g]
    x = generate(G, G.sample_latent(len(g), data.length, gen, device), y, c)
    fake_db, _ = losses.class_log_psd(x, g, n_groups, data.fs, nperseg=PSD_NPERSEG)
    d = torch.sqrt(((fake_db - real_db)[:, band] ** 2).mean(dim=1))
    return {data.group_names[i]: float(d[i]) for i in range(n_groups)}


def _progress(total: int, initial: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, disable=not enabled, desc="train", unit="step", dynamic_ncols=True)


# --------------------------------------------------------------------------------------------------
# Monitoring plots (matplotlib Agg)
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def plot_samples(G: torch.nn.Module, data: TrainData, path: Path, seed: int, step: int) -> Path:
    """Per class: one generated and one real waveform, and generated vs real mean PSD."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from vibgan.spectral import mean_psd

    device = data.signals.device
    k = len(data.classes)
    gen = torch.Generator(device=device).manual_seed(seed)
    n = 8
    y = torch.arange(k, device=device).repeat_interleave(n)
    conds = data.conditions
    c = torch.tensor([conds[data.classes[i]][0] for i in y.tolist()], dtype=torch.float32, device=device)
    fake = G(G.sample_latent(len(y), data.length, gen, device), y, c).float()
    real, yr, _, _ = data.sample(n * k * 4, torch.Generator(device=device).manual_seed(seed + 1))
    if data.normalizer is not None:
        fake = data.normalizer.inverse(fake, y.tolist())
        real = data.normalizer.inverse(real, yr.tolist())
    fake, real, y, yr = fake.cpu().numpy(), real.cpu().numpy(), y.cpu().numpy(), yr.cpu().numpy()
    t = np.arange(data.length) / data.fs
    fig, axes = plt.subplots(k, 2, figsize=(12, 2.0 * k + 0.8), squeeze=False)
    for i, label in enumerate(data.classes):
        fk, rl = fake[y == i], real[yr == i]
        ax = axes[i, 0]
        if len(rl):
            ax.plot(t, rl[0, 0], lw=0.5, color="0.55", label="real")
        ax.plot(t, fk[0, 0], lw=0.5, color="C3", alpha=0.85, label="generated")
        ax.set_ylabel(f"{label}\n[{data.units}]")
        ax.legend(loc="upper right", fontsize=7)
        ax = axes[i, 1]
        seglen = min(256, data.length)
        if data.length >= 256:
            f, pf = mean_psd(fk, data.fs)
            if len(rl):
                _, pr = mean_psd(rl, data.fs)
                ax.semilogy(f, pr, color="0.4", lw=1, label="real")
            ax.semilogy(f, pf, color="C3", lw=1, label="generated")
            ax.set_ylabel(f"PSD [{data.units}²/Hz]")
        else:
            ax.plot(np.arange(seglen), fk[:8, 0].T, lw=0.6, color="C3")
            ax.set_ylabel("generated curves")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time [s]")
    axes[-1, 1].set_xlabel("frequency [Hz]")
    fig.suptitle(f"step {step}: generated (EMA) vs real")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_losses(history: dict[str, list[float]], path: Path) -> Path:
    """Loss curves over steps, and the eval log-spectral distance when recorded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    steps = history.get("step", [])
    for name in ("loss/d", "loss/g_adv", "loss/spectral", "loss/kurtosis", "loss/envelope", "loss/spread"):
        vals = history.get(name, [])
        if vals and any(v != 0 for v in vals):
            axes[0].plot(steps[: len(vals)], vals, label=name, lw=1)
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=8)
    axes[0].set_title("training losses")
    if history.get("lsd_db_max"):
        axes[1].plot(history["eval_step"], history["lsd_db_max"], marker="o", lw=1)
        axes[1].axhline(1.5, color="0.5", ls="--", lw=0.8, label="1.5 dB")
        axes[1].set_ylabel("worst-class lsd_db vs training PSD [dB]")
        axes[1].set_yscale("log")
        axes[1].legend(fontsize=8)
    axes[1].set_xlabel("step")
    axes[1].set_title("spectral distance (EMA generator)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path



# --------------------------------------------------------------------------------------------------
# Final fidelity: generated versus held-out real segments, per class (and speed)
# --------------------------------------------------------------------------------------------------
def fidelity_sets(trained: TrainedGenerator, data: TrainData, n_fake: int, seed: int = 0
                  ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray], dict[str, float | None]]:
    """Real held-out, real training and generated segments grouped per class (per class and speed when a
    class was recorded at several speeds), plus each group's characteristic fault frequency in Hz.

    Returns (real_test, real_train, fake, fault_freqs), each dict keyed by group name.
    """
    from vibgan.bearing import FAULTS, characteristic_frequency
    from vibgan.data import windows

    T = data.length
    multi = {lab: len(c) > 1 for lab, c in data.conditions.items()}
    test, train_w, fake, fcs = {}, {}, {}, {}
    usable = lambda ps: any(p is not None and p.samples >= T for p in ps)  # noqa: E731
    parts = data.test_parts if usable(data.test_parts) else data.val_parts
    for i, (tr, te) in enumerate(zip(data.train_parts, parts)):
        rpm = float(tr.meta.get("rpm") or 0.0)
        load = float(tr.meta.get("load_hp") or 0.0)
        group = f"{tr.label}@{rpm:g}rpm" if multi.get(tr.label) else tr.label
        if te is None or te.samples < T:
            continue
        test.setdefault(group, []).append(windows(te, T, T))
        train_w.setdefault(group, []).append(windows(tr, T, T))
        fault = tr.meta.get("fault")
        fcs[group] = characteristic_frequency(fault, rpm, data.geometry) if fault in FAULTS and rpm > 0 else None
        if group not in fake:
            fake[group] = trained.sample(tr.label, n_fake, rpm=rpm, load_hp=load, seed=seed + i)
    cat = lambda d: {k: np.concatenate(v, axis=0) for k, v in d.items()}  # noqa: E731
    return cat(test), cat(train_w), fake, fcs
