"""Training data: recordings -> normalised tensors the loop samples random segments from.

``prepare_data(cfg)`` loads what a config names and returns a ``TrainData`` (in memory, on the device) or a
``LazyTrainData`` (windows read from an HDF5 recordings file per batch). ``SegmentDataset`` is the same
windows as a torch ``Dataset``, for users who train their own models on them."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from vibgan import losses, spectral
from vibgan.bearing import FAULTS, GeometrySpec, characteristic_frequency, geometry, geometry_spec
from vibgan.catalog import load_many
from vibgan.config import Config, geometry_of
from vibgan.cwru import label_sort_key
from vibgan.errors import ConfigError, DataError
from vibgan.exchange import process_local_h5, validate_generated
from vibgan.losses import PSD_NPERSEG, psd_band
from vibgan.manifest import load_manifest
from vibgan.normalize import Normalizer, recording_stats
from vibgan.recordings import Recording, hdf5_recordings, label_fields, open_hdf5, resample
from vibgan.synthetic import simulate_dataset, sinusoids
from vibgan.windows import physics_length, positive_int, split_bounds, split_by_time


def _cond_value(v: Any, src: str, name: str) -> float:
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        raise DataError(f"{src}: {name}: expected a number, got {v!r}") from None


class SegmentDataset(Dataset):
    """Windows of recordings as ``(x, class_index, cond)``: x float32 (C, T), cond float32 (2,) = [rpm, load_hp].

    Built from Recordings in memory, or with ``from_hdf5`` from a file read lazily, one window at a time.
    The default DataLoader collate turns items into (B, C, T), (B,) and (B, 2).

    Parameters
    ----------
    recordings : recordings of one sampling rate and channel count (e.g. the training parts).
    length : window length T in samples.
    hop : step between windows in samples (default ``length``).
    classes : class labels in index order (default the recordings' labels in ``label_sort_key`` order).
    normalizer : applied per window with the window's class, if given.
    missing_cond : value for rpm/load_hp where a recording has none; default None raises a DataError.

    Attributes
    ----------
    fs (Hz), channels, length, classes, targets (class index per window, int64).
    """
    def __init__(self, recordings: Iterable[Recording], length: int, hop: int | None = None, *,
                 classes: Sequence[str] | None = None, normalizer: Normalizer | None = None,
                 missing_cond: float | None = None) -> None:
        recs = list(recordings)
        if not recs:
            raise DataError("SegmentDataset: expected at least one recording")
        rates = sorted({r.fs for r in recs})
        if len(rates) > 1:
            raise DataError(f"SegmentDataset: fs: recordings have different sampling rates {rates} Hz")
        self._init_index(
            sources=[r.source for r in recs], labels=[r.label for r in recs],
            samples=[r.samples for r in recs], chans=[r.channels for r in recs],
            cond=[(_cond_value(r.meta.get("rpm"), r.source, "rpm"),
                   _cond_value(r.meta.get("load_hp"), r.source, "load_hp")) for r in recs],
            fs=rates[0], length=length, hop=hop, classes=classes, normalizer=normalizer, missing_cond=missing_cond,
        )
        self._arrays: list[np.ndarray] | None = [r.signal for r in recs]
        self._h5path: str | None = None

    def _init_index(self, *, sources: list[str], labels: list[str], samples: list[int], chans: list[int],
                    cond: Any, fs: float, length: int, hop: int | None,
                    classes: Sequence[str] | None, normalizer: Normalizer | None, missing_cond: float | None) -> None:
        self.length = positive_int(length, "SegmentDataset: length")
        self.hop = self.length if hop is None else positive_int(hop, "SegmentDataset: hop")
        if len(set(chans)) != 1:
            raise DataError(f"SegmentDataset: channels: recordings differ in channel count {sorted(set(chans))}; "
                            f"load them with the same channels (e.g. channels=['DE'])")
        self.channels, self.fs = chans[0], float(fs)
        for s, lab in zip(sources, labels, strict=True):
            if not lab:
                raise DataError(f"{s}: label: SegmentDataset needs a class label on every recording")
        self.classes = list(classes) if classes is not None else sorted(set(labels), key=label_sort_key)
        lookup = {c: i for i, c in enumerate(self.classes)}
        unknown = sorted(set(labels) - set(lookup))
        if unknown:
            raise DataError(f"SegmentDataset: classes: recordings labelled {unknown} are not in classes {self.classes}")
        for s, n in zip(sources, samples, strict=True):
            if n < self.length:
                raise DataError(f"{s}: SegmentDataset: {n} samples, shorter than one window of {self.length}")
        counts = (np.asarray(samples, dtype=np.int64) - self.length) // self.hop + 1
        self._offsets = np.concatenate([[0], np.cumsum(counts)])
        self._label_idx = np.asarray([lookup[lab] for lab in labels], dtype=np.int64)
        self.targets = np.repeat(self._label_idx, counts)
        cvec = np.asarray(cond, dtype=np.float64).reshape(len(labels), 2)
        missing = ~np.isfinite(cvec)
        if missing.any():
            if missing_cond is None:
                i, j = np.argwhere(missing)[0]
                raise DataError(f"{sources[i]}: {('rpm', 'load_hp')[j]}: SegmentDataset's condition vector needs "
                                f"rpm and load_hp; set them in meta or pass missing_cond=<value>")
            cvec[missing] = float(missing_cond)
        cvec = cvec.astype(np.float32)
        self._cond = cvec
        if normalizer is not None:
            if normalizer.channels != self.channels:
                raise DataError(f"SegmentDataset: normalizer: fitted on {normalizer.channels} channels, the data "
                                f"has {self.channels}")
            rows = normalizer._rows(list(labels), len(labels))
            assert normalizer.mean is not None and normalizer.std is not None
            self._mean = normalizer.mean[rows].astype(np.float32)[:, :, None]
            self._std = normalizer.std[rows].astype(np.float32)[:, :, None]
        else:
            self._mean = self._std = None
        self._sources = sources

    # -- lazy HDF5 ------------------------------------------------------------------------------------------

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike, length: int | None = None, hop: int | None = None, *,
                  classes: Sequence[str] | None = None, normalizer: Normalizer | None = None,
                  missing_cond: float | None = None) -> SegmentDataset:
        """A dataset over an HDF5 file that may exceed memory: only metadata is read here, windows on demand.

        The file is either the generated-data exchange format (``signals`` (N, C, T), ``labels``, optional
        ``rpm``/``load_hp``, attribute ``fs``; windows are cut inside each row, ``length`` defaults to T) or a
        recordings file (each 1-D/2-D dataset one recording with attributes fs, label, rpm, load_hp on the
        dataset or the file; see ``write_recordings``). Each worker process opens its own file handle.
        """
        src = str(path)
        p = Path(path)
        if not p.is_file():
            raise DataError(f"{src}: file: not found")
        self = cls.__new__(cls)
        with open_hdf5(p, src) as f:
            if "signals" in f:
                gen = validate_generated(f, src, read_signals=False)
                n, c, t = gen["shape"]
                if n == 0:
                    raise DataError(f"{src}: signals: expected at least one generated signal, got none")
                length = t if length is None else length
                rpm, load = gen["rpm"], gen["load_hp"]
                self._init_index(
                    sources=[f"{src}:signals[{i}]" for i in range(n)] if n <= 100_000 else [src] * n,
                    labels=list(gen["labels"]), samples=[t] * n, chans=[c] * n,
                    cond=np.stack([np.full(n, np.nan) if rpm is None else rpm,
                                   np.full(n, np.nan) if load is None else load], axis=1),
                    fs=gen["fs"], length=length, hop=hop, classes=classes, normalizer=normalizer,
                    missing_cond=missing_cond)
                self._keys = [("signals", i) for i in range(n)]
            else:
                dsets, infos = zip(*hdf5_recordings(f, src), strict=True)
                rates = [info["fs"] for info in infos]
                if length is None:
                    raise DataError(f"{src}: SegmentDataset.from_hdf5: length: required for a recordings file")
                self._init_index(
                    sources=[f"{src}:{ds.name}" for ds in dsets], labels=[i["label"] or "" for i in infos],
                    samples=[i["shape"][1] for i in infos], chans=[i["shape"][0] for i in infos],
                    cond=[(_cond_value(i["rpm"], src, "rpm"), _cond_value(i["load_hp"], src, "load_hp")) for i in infos], fs=rates[0], length=length, hop=hop,
                    classes=classes, normalizer=normalizer, missing_cond=missing_cond)
                self._keys = [(ds.name, None) for ds in dsets]
        self._arrays = None
        self._h5path = str(p)
        self._h5: h5py.File | None = None
        self._pid: int | None = None
        return self

    def _file(self) -> h5py.File:
        return process_local_h5(self, self._h5path)

    def close(self) -> None:
        """Close the lazily opened HDF5 file (it reopens on the next item)."""
        h5 = getattr(self, "_h5", None)
        if h5 is not None and self._pid == os.getpid():
            h5.close()
        self._h5 = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_h5"] = None
        return state

    # -- items ----------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._offsets[-1])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        n = len(self)
        i = int(index)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(f"SegmentDataset: index {index} out of range for {n} windows")
        r = int(np.searchsorted(self._offsets, i, side="right") - 1)
        start = (i - int(self._offsets[r])) * self.hop
        stop = start + self.length
        if self._arrays is not None:
            x = self._arrays[r][:, start:stop]
        else:
            name, row = self._keys[r]
            ds = self._file()[name]
            if row is not None:
                x = ds[row, :, start:stop]  # reads one (C, T) hyperslab, never the whole dataset
            elif ds.ndim == 1:
                x = ds[start:stop][None, :]
            else:
                x = ds[:, start:stop]
            x = np.asarray(x)
            if not np.isfinite(x).all():
                raise DataError(f"{self._sources[r]}: samples {start}:{stop}: expected finite values, found NaN/Inf")
        x = np.asarray(x, dtype=np.float32)
        if self._mean is not None:
            x = (x - self._mean[r]) / self._std[r]
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), int(self._label_idx[r]), \
            torch.from_numpy(self._cond[r].copy())


def _bearing_of(recordings: list[Recording], default: GeometrySpec) -> GeometrySpec:
    """The bearing of a data set: the one its recordings name (a manifest's bearing column), else ``default``.
    Recordings of different bearings are refused: one generator knows one bearing's defect frequencies."""
    named = {json.dumps(r.meta["bearing"], sort_keys=True) for r in recordings if r.meta.get("bearing") is not None}
    if not named:
        return geometry_spec(default)
    if len(named) > 1 or len(named) == 1 and any(r.meta.get("bearing") is None for r in recordings):
        a = next(r for r in recordings if r.meta.get("bearing") is not None)
        b = next(r for r in recordings if json.dumps(r.meta.get("bearing"), sort_keys=True)
                 != json.dumps(a.meta["bearing"], sort_keys=True))
        raise DataError(f"training data: bearing: {a.source} names {a.meta['bearing']}, {b.source} "
                        f"{b.meta.get('bearing') or 'none'}; train one model per bearing (select rows by data.classes "
                        "or split the manifest)")
    return json.loads(named.pop())


def segment_length_for(recordings: list[Recording], cfg: Config) -> tuple[int, str]:
    """``data.segment_length``, or where it is 0 the length the physics asks for (windows.physics_length): the
    lowest characteristic fault frequency of the recordings at their own speeds (the shaft rate where no
    recording has a bearing fault type), on the data set's bearing, a multiple of the generator's hop.
    Returns (T, why)."""
    d = cfg.data
    if d.segment_length:
        return d.segment_length, f"{d.segment_length} samples: data.segment_length"
    geo = _bearing_of(recordings, geometry_of(d))
    fcs = [f for f in (characteristic_frequency(r.meta["fault"], float(r.meta["rpm"]), geo) for r in recordings
                       if r.meta.get("fault") in FAULTS and float(r.meta.get("rpm") or 0) > 0) if f]
    shafts = [float(r.meta["rpm"]) / 60.0 for r in recordings if float(r.meta.get("rpm") or 0) > 0]
    if not fcs and not shafts:
        some = recordings[0].source if recordings else "the data"
        raise ConfigError(f"data.segment_length = 0 (from the physics) needs each recording's rpm; {some} has none: "
                          "give the rpm (manifest column) or set data.segment_length")
    hop = cfg.model.hop  # the generator's hop
    fs = recordings[0].fs
    shortest = min(int(r.samples * d.train_fraction) for r in recordings)
    t, why = physics_length(fs, min(fcs) if fcs else min(shafts), hop, shortest=shortest)
    if not fcs:
        why += " (no recording has a bearing fault type: the shaft rate stands in)"
    return t, why


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
    normalizer: Normalizer | None
    train_parts: list[Recording] = field(default_factory=list)  # physical units
    val_parts: list[Recording | None] = field(default_factory=list)  # None where the fraction is 0
    test_parts: list[Recording | None] = field(default_factory=list)
    geometry: GeometrySpec = "6205"  # the bearing: a known name or its numbers (vibgan.bearing.geometry_spec)
    units: str = "g"
    provenance: dict[str, Any] = field(default_factory=dict)
    # (rank, world): this process samples only window starts in its own 1/world of each recording
    shard: tuple[int, int] = (0, 1)
    # the envelope band (Hz) of the envelope loss and the envelope checks, and how it was chosen
    # (``choose_envelope_band``: from the data unless train.envelope_band gives it)
    envelope_band: tuple[float, float] | None = None
    envelope_band_info: dict[str, Any] = field(default_factory=dict)
    length_why: str = ""  # how the segment length was chosen (segment_length_for)

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

    def class_faults(self) -> list[str | None]:
        """Each class's fault type (normal, inner, outer, ball) from its recordings' meta, None where unknown."""
        out: dict[str, str | None] = {c: None for c in self.classes}
        for rec in self.train_parts:
            if out.get(rec.label) is None and rec.meta.get("fault") in FAULTS:
                out[rec.label] = rec.meta["fault"]
        return [out[c] for c in self.classes]

    def mean_rpm(self) -> float | None:
        """The geometric mean of the (class, condition) groups' speeds in rpm, None where no group has one."""
        rpm = self.group_cond[:, 0].double()
        rpm = rpm[rpm > 0]
        return float(torch.exp(torch.log(rpm).mean())) if len(rpm) else None

    def class_fault_freqs(self) -> dict[str, float | None]:
        """label -> its characteristic fault frequency (Hz) at its first training speed, None for normal or
        unknown fault types (the fault type comes from each recording's meta)."""
        out: dict[str, float | None] = {c: None for c in self.classes}
        for rec in self.train_parts:
            fault, rpm = rec.meta.get("fault"), float(rec.meta.get("rpm") or 0.0)
            if out.get(rec.label) is None and fault in FAULTS and rpm > 0:
                out[rec.label] = characteristic_frequency(fault, rpm, self.geometry)
        return out

    def choose_envelope_band(self, n_per_class: int = 64, seed: int = 0) -> dict[str, Any]:
        """Set ``envelope_band`` from the real training windows (spectral.choose_envelope_band: the kurtogram's
        most impulsive band, pooled over the fault classes) and return how it was chosen."""
        gen = torch.Generator(device=self.signals.device).manual_seed(seed)
        x, y, _, _ = self.sample(n_per_class * len(self.classes), gen)  # normalised: SK does not see the scale
        x, y = x.cpu().numpy(), y.cpu().numpy()
        sets = {lab: x[y == i] for i, lab in enumerate(self.classes) if (y == i).any()}
        info = spectral.choose_envelope_band(sets, self.fs, self.class_fault_freqs(), seed=seed)
        self.envelope_band = (info["low"], info["high"])
        self.envelope_band_info = {**info, "source": "data"}
        return self.envelope_band_info

    def set_envelope_band(self, band: Sequence[float] | None, seed: int = 0, *,
                          source: str = "config (train.envelope_band)",
                          rule: str | None = "given in the configuration") -> dict[str, Any]:
        """``band`` (Hz) as given (train.envelope_band, or ``source``), or from the data when it is empty or None."""
        if band:
            self.envelope_band = (float(band[0]), float(band[1]))
            self.envelope_band_info = {"low": self.envelope_band[0], "high": self.envelope_band[1], "source": source}
            if rule:
                self.envelope_band_info["rule"] = rule
            return self.envelope_band_info
        return self.choose_envelope_band(seed=seed)

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
                        geometry: GeometrySpec = "6205", per_recording: bool = False) -> TrainData:
        """Split each recording by time, fit the per-class normaliser on the training parts only, pack tensors.

        ``per_recording``: standardise every recording by its own statistics (sensor gains that differ between
        recordings); outputs go back in the units of each (class, rpm, load) group's recordings."""

        if not recordings:
            raise DataError("training data: no recordings were found")
        fs = {r.fs for r in recordings}
        if len(fs) > 1:
            a = recordings[0]
            b = next(r for r in recordings if r.fs != a.fs)
            raise DataError(f"training data: recordings have different sampling rates: {a.source} at {a.fs:g} Hz, "
                            f"{b.source} at {b.fs:g} Hz; set data.fs to resample them all to one rate (Hz), or "
                            "train one model per rate")
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
        normalizer = Normalizer(per_class=True, per_recording=per_recording).fit(train_parts) if normalize else None
        lmax = max(p.samples for p in train_parts)
        sig = np.zeros((len(train_parts), lmax, train_parts[0].channels), dtype=np.float32)
        for i, p in enumerate(train_parts):
            x = p.signal[None]  # (1, C, N)
            if normalizer is not None and per_recording:
                mean, std = recording_stats(p)
                x = ((x - mean[None, :, None]) / std[None, :, None]).astype(np.float32)
            elif normalizer is not None:
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
            geometry=_bearing_of(recordings, geometry), units=str(train_parts[0].meta.get("units", "g")),
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


#: The simulator's sampling rate when data.fs is 0 (Hz)
SIMULATED_FS = 12000.0


def load_recordings(cfg: Config) -> list[Recording]:
    """The recordings a config names: simulated bearings, files on disk, or the seed sinusoids."""
    d = cfg.data
    if d.source == "simulated":
        s = d.simulate
        recs = simulate_dataset(faults=tuple(s.faults), rpms=tuple(s.rpms), fs=s.fs or d.fs or SIMULATED_FS,
                                duration=s.duration_s, severity=s.severity, seed=s.seed, load_hp=s.load_hp,
                                channels=len(d.channels), geometry=geometry(geometry_of(d)),
                                resonance_hz=s.resonance_hz, noise_g=s.noise_g, shaft_g=s.shaft_g)
        return [resample(r, d.fs) for r in recs] if d.fs and s.fs and d.fs != s.fs else recs
    if d.source == "files" and d.manifest:
        return load_manifest(d.manifest, fs=d.fs or None, channels=d.channels or None, classes=d.classes or None)
    if d.source == "files":
        path = Path(d.path)
        for name, p in [("data.path", d.path)] + [("data.extra_paths", p) for p in d.extra_paths]:
            if not Path(p).exists():
                raise ConfigError(f"{name} = {p!r}: no such file or directory")
        where = [path, *map(Path, d.extra_paths)] if d.extra_paths else path
        return load_many(where, channels=d.channels or None, classes=d.classes or None, fs=d.fs or None)
    raise ConfigError(f"data.source = {d.source!r}: load_recordings reads simulated or files; "
                      "use prepare_data for sinusoids")


def prepare_data(cfg: Config) -> TrainData:
    """Load, split by time, normalise and pack the data a config names."""
    d = cfg.data
    if d.source == "sinusoid":

        n_test = max(256, d.n_sinusoids // 4)
        y = sinusoids(d.n_sinusoids + n_test, length=d.segment_length, seed=cfg.train.seed)
        fs = (d.segment_length - 1) / 10.0  # samples per unit of x on [-5, 5]; data.fs does not apply
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
        if not Path(d.path).is_file():
            raise ConfigError(f"data.path = {d.path!r}: no such file (data.lazy reads one HDF5 recordings file)")
        td = LazyTrainData.from_hdf5(d.path, length=d.segment_length, train_fraction=d.train_fraction,
                                     val_fraction=d.val_fraction, classes=d.classes or None, geometry=geometry_of(d))
        if d.fs and abs(td.fs - d.fs) > 1e-9 * d.fs:
            raise ConfigError(f"data.fs = {d.fs:g}: data.lazy reads windows at the file's own rate, {td.fs:g} Hz "
                              f"({d.path}); write the recordings file at {d.fs:g} Hz or set data.fs = 0")
        td.set_envelope_band(cfg.train.envelope_band, seed=cfg.train.seed)
        return td
    recs = load_recordings(cfg)
    if d.classes:
        recs = [r for r in recs if r.label in set(d.classes)] or recs
    length, why = segment_length_for(recs, cfg)
    td = TrainData.from_recordings(recs, length=length, train_fraction=d.train_fraction,
                                   val_fraction=d.val_fraction, classes=d.classes or None, geometry=geometry_of(d),
                                   per_recording=d.normalize == "recording")
    td.length_why = why
    td.set_envelope_band(cfg.train.envelope_band, seed=cfg.train.seed)
    return td


CHUNK = 1 << 20  # samples per read in the normaliser's streaming pass


def _streamed_class_stats(src: str, dsets: list, infos: list[dict], ends: list[int], labels: list[str],
                          channels: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per class: the mean and standard deviation (C,) of samples 0:end of each of its datasets, in one streaming
    pass of float64 sums (never the whole file in memory); a zero deviation becomes 1."""
    sums = {lab: [np.zeros(channels), np.zeros(channels), 0] for lab in labels}
    for ds, info, end in zip(dsets, infos, ends):
        acc = sums[info["label"]]
        for a in range(0, end, CHUNK):
            z = min(end, a + CHUNK)
            x = np.asarray(ds[a:z] if ds.ndim == 1 else ds[:, a:z], dtype=np.float64).reshape(channels, -1)
            if not np.isfinite(x).all():
                raise DataError(f"{src}: dataset {ds.name}: samples {a}:{z}: expected finite values, found NaN/Inf")
            acc[0] += x.sum(axis=1)
            acc[1] += (x * x).sum(axis=1)
            acc[2] += x.shape[1]
    mean = {lab: s[0] / s[2] for lab, s in sums.items()}
    std = {lab: np.sqrt(np.maximum(s[1] / s[2] - mean[lab] ** 2, 0.0)) for lab, s in sums.items()}
    return mean, {lab: np.where(v > 0, v, 1.0) for lab, v in std.items()}


@dataclass
class LazyTrainData(TrainData):
    """A ``TrainData`` whose training parts stay in an HDF5 file; ``gather`` reads windows on demand."""
    h5path: str = ""
    keys: list[str] = dataclasses.field(default_factory=list)  # dataset name of each recording
    rec_mean: np.ndarray | None = None  # (R, C) float32: the normaliser row of each recording
    rec_std: np.ndarray | None = None

    def to(self, device: torch.device) -> LazyTrainData:
        return dataclasses.replace(self, signals=self.signals.to(device), lengths=self.lengths.to(device),
                                   rec_class=self.rec_class.to(device), rec_cond=self.rec_cond.to(device))

    def gather(self, rec: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        r_np, s_np = rec.cpu().numpy(), start.cpu().numpy()
        T = self.length
        out = np.empty((len(r_np), len(self.channels), T), dtype=np.float32)
        f = process_local_h5(self, self.h5path)
        for i in np.lexsort((s_np, r_np)):  # in file order: sequential reads where windows are close
            r, s = int(r_np[i]), int(s_np[i])
            ds = f[self.keys[r]]
            x = ds[s: s + T] if ds.ndim == 1 else ds[:, s: s + T]
            out[i] = np.asarray(x, dtype=np.float32).reshape(-1, T)
        if not np.isfinite(out).all():
            bad = sorted({self.keys[int(r_np[i])] for i in np.flatnonzero(~np.isfinite(out).all(axis=(1, 2)))})
            raise DataError(f"{self.h5path}: datasets {bad}: expected finite samples, found NaN/Inf in a window")
        assert self.rec_mean is not None and self.rec_std is not None
        out = (out - self.rec_mean[r_np][:, :, None]) / self.rec_std[r_np][:, :, None]
        return torch.from_numpy(out).to(self.signals.device)

    @classmethod
    def from_hdf5(cls, path: str | os.PathLike, *, length: int, train_fraction: float = 0.7,
                  val_fraction: float = 0.0, classes: list[str] | None = None, geometry: GeometrySpec = "6205",
                  eval_windows: int = 64) -> LazyTrainData:
        """Index an HDF5 recordings file (metadata only), fit the normaliser in one streaming pass."""
        src = str(path)
        if not Path(path).is_file():
            raise DataError(f"{src}: data.lazy needs an HDF5 recordings file (write_recordings); not found")
        with open_hdf5(path, src, "HDF5 recordings file") as f:
            if "signals" in f:
                raise DataError(f"{src}: this is a generated-data file; data.lazy reads recordings files "
                                "(one (C, N) dataset per recording, see vibgan.exchange.write_recordings)")
            dsets, infos = (list(v) for v in zip(*hdf5_recordings(f, src, labelled=True), strict=True))
            rates = [infos[0]["fs"]]
            chans = sorted({i["shape"][0] for i in infos})
            if len(chans) > 1:
                raise DataError(f"{src}: datasets have different channel counts {chans}")
            labels = sorted({i["label"] for i in infos}, key=[i["label"] for i in infos].index)
            if classes:
                missing = [c for c in classes if c not in labels]
                if missing:
                    raise DataError(f"{src}: data.classes asks for {missing}, found only {labels}")
                keep = [k for k, i in enumerate(infos) if i["label"] in classes]
                dsets, infos, labels = [dsets[k] for k in keep], [infos[k] for k in keep], list(classes)
            test_fraction = max(0.0, 1.0 - train_fraction - val_fraction)
            bounds = []
            for ds, info in zip(dsets, infos):
                n = info["shape"][1]
                b = split_bounds(n, [train_fraction, val_fraction, test_fraction])
                if b[1] < length:
                    raise DataError(f"{src}: dataset {ds.name}: training part has {b[1]} samples, shorter than one "
                                    f"segment of {length}; lower data.segment_length or use longer recordings")
                bounds.append(b)
            c = chans[0]
            mean, std = _streamed_class_stats(src, dsets, infos, [int(b[1]) for b in bounds], labels, c)
            normalizer = Normalizer.from_dict({"per_class": True, "classes": labels,
                                               "mean": {k: v.tolist() for k, v in mean.items()},
                                               "std": {k: v.tolist() for k, v in std.items()}})
            # bounded excerpts in physical units, for evaluation and the fidelity report
            cap = eval_windows * length
            train_parts, val_parts, test_parts = [], [], []

            def excerpt(ds, info, a: int, z: int, part: str) -> Recording | None:
                z = min(z, a + cap)
                if z - a < length:
                    return None
                x = np.asarray(ds[a:z] if ds.ndim == 1 else ds[:, a:z], dtype=np.float64).reshape(c, -1)
                meta = {"label": info["label"], "rpm": info["rpm"], "load_hp": info["load_hp"],
                        "units": info["units"], "sensor": info["names"], "source": f"{src}:{ds.name}",
                        "part": part, "offset": a, **label_fields(info["label"])}
                return Recording(x, info["fs"], meta)

            for ds, info, b in zip(dsets, infos, bounds):
                train_parts.append(excerpt(ds, info, 0, int(b[1]), "train"))
                val_parts.append(excerpt(ds, info, int(b[1]), int(b[2]), "val"))
                test_parts.append(excerpt(ds, info, int(b[2]), int(b[3]), "test"))
            names = [ds.name for ds in dsets]  # while the file is open (a closed dataset has no name)
        rows = [labels.index(i["label"]) for i in infos]
        cond = [[float(i["rpm"] or 0.0), float(i["load_hp"] or 0.0)] for i in infos]
        return cls(
            classes=labels, fs=float(rates[0]), channels=list(infos[0]["names"]), length=length,
            signals=torch.zeros(len(names), 1, c), lengths=torch.tensor([int(b[1]) for b in bounds]),
            rec_class=torch.tensor(rows), rec_cond=torch.tensor(cond, dtype=torch.float32), normalizer=normalizer,
            train_parts=train_parts, val_parts=val_parts, test_parts=test_parts, geometry=geometry,
            units=str(infos[0]["units"]),
            provenance={"recordings": [f"{src}:{n}" for n in names], "lazy": True,
                        "fractions": [train_fraction, val_fraction, test_fraction]},
            h5path=str(path), keys=names,
            rec_mean=np.stack([mean[i["label"]] for i in infos]).astype(np.float32),
            rec_std=np.stack([std[i["label"]] for i in infos]).astype(np.float32),
        )

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_h5", None)
        return state
