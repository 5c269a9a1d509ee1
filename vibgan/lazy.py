"""Training from an HDF5 recordings file larger than memory: windows are read from disk per batch.

``data.lazy = true`` with ``data.path`` an HDF5 recordings file (``vibgan.data.write_recordings``: one
(C, N) dataset per recording with attributes fs, label, rpm, load_hp) trains on it without loading the
samples. What stays in memory is bounded whatever the file size:

- the per-class normaliser, fitted in one streaming pass over the training parts (float64 sums);
- for each batch, only its B windows (one hyperslab read each, sorted by position);
- for the fidelity report, at most ``eval_windows`` windows of each recording's training and held-out part.

Sampling draws the same (class-balanced recording, start) pairs as the in-memory ``TrainData`` from the
same generator, so runs are reproducible and torchrun shards work unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from vibgan.data import (
    Normalizer,
    Recording,
    _h5_datasets,
    _h5_recording_info,
    _label_fields,
    _reading,
    process_local_h5,
    split_bounds,
)
from vibgan.errors import DataError
from vibgan.train import TrainData

CHUNK = 1 << 20  # samples per read in the normaliser's streaming pass


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
                  val_fraction: float = 0.0, classes: list[str] | None = None, geometry: str = "6205",
                  eval_windows: int = 64) -> LazyTrainData:
        """Index an HDF5 recordings file (metadata only), fit the normaliser in one streaming pass."""
        src = str(path)
        if not Path(path).is_file():
            raise DataError(f"{src}: data.lazy needs an HDF5 recordings file (write_recordings); not found")
        with _reading(src, "HDF5 recordings file"), h5py.File(path, "r") as f:
            if "signals" in f:
                raise DataError(f"{src}: this is a generated-data file; data.lazy reads recordings files "
                                "(one (C, N) dataset per recording, see vibgan.data.write_recordings)")
            dsets = [ds for ds in _h5_datasets(f).values() if ds.ndim in (1, 2)]
            if not dsets:
                raise DataError(f"{src}: datasets: expected one (channels, samples) dataset per recording, found none")
            infos = [_h5_recording_info(f, ds, src) for ds in dsets]
            for ds, info in zip(dsets, infos):
                if info["fs"] is None:
                    raise DataError(f"{src}: dataset {ds.name}: fs: expected an 'fs' attribute (Hz)")
                if not info["label"]:
                    raise DataError(f"{src}: dataset {ds.name}: label: expected a 'label' attribute (the class)")
            rates = sorted({i["fs"] for i in infos})
            if len(rates) > 1:
                raise DataError(f"{src}: fs: datasets have different sampling rates {rates} Hz; one model per rate")
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
            # the per-class normaliser in one streaming pass (float64 sums), never the whole file in memory
            c = chans[0]
            sums = {lab: [np.zeros(c), np.zeros(c), 0] for lab in labels}
            for ds, info, b in zip(dsets, infos, bounds):
                acc = sums[info["label"]]
                for a in range(0, int(b[1]), CHUNK):
                    z = min(int(b[1]), a + CHUNK)
                    x = np.asarray(ds[a:z] if ds.ndim == 1 else ds[:, a:z], dtype=np.float64).reshape(c, -1)
                    if not np.isfinite(x).all():
                        raise DataError(f"{src}: dataset {ds.name}: samples {a}:{z}: expected finite values, found NaN/Inf")
                    acc[0] += x.sum(axis=1)
                    acc[1] += (x * x).sum(axis=1)
                    acc[2] += x.shape[1]
            mean = {lab: s[0] / s[2] for lab, s in sums.items()}
            std = {lab: np.sqrt(np.maximum(s[1] / s[2] - mean[lab] ** 2, 0.0)) for lab, s in sums.items()}
            std = {lab: np.where(v > 0, v, 1.0) for lab, v in std.items()}
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
                        "part": part, "offset": a, **_label_fields(info["label"])}
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
