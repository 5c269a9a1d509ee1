"""A trained generator as users see it: ``TrainedGenerator`` checks requests, samples with a seed in
physical units, and saves / loads itself as safetensors + JSON (no pickle)."""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import safetensors.torch  # called through the module: tests inject a full disk by patching save_file
import torch
from safetensors import SafetensorError
from torch import nn

import vibgan
from vibgan.config import Config, ModelConfig, dataclass_from_dict, to_dict
from vibgan.errors import ModelError, VibganError
from vibgan.files import fsync_file, sha256_file
from vibgan.networks import build_models, with_optional_buffers
from vibgan.normalize import Normalizer

if TYPE_CHECKING:
    from vibgan.datasets import TrainData

#: Largest array ``TrainedGenerator.sample`` returns at once; bigger requests go through ``iter_samples``.
MAX_SAMPLE_BYTES = 2 * 1024**3


#: Segments whose noise is drawn together from one (seed, block) generator in TrainedGenerator.sample.
LATENT_BLOCK = 64


def _not_safetensors(path: Path) -> str | None:
    """None when ``path`` starts like a safetensors file (an 8-byte little-endian header length, then that many
    bytes of JSON that fit in the file); else what it looks like instead."""
    with open(path, "rb") as fh:
        head = fh.read(9)
        size = os.fstat(fh.fileno()).st_size
    if head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
        return "it holds a Python pickle"
    if head[:4] == b"PK\x03\x04":
        return "it is a zip archive, as torch.save writes"
    if len(head) < 9 or head[8:9] != b"{" or int.from_bytes(head[:8], "little") > size - 8:
        return "no safetensors header"
    return None


class ExtrapolationWarning(UserWarning):
    """A generator was asked for a condition (speed, load) outside those its class was trained at."""


class TrainedGenerator:
    """A generator ready to sample in physical units.

    Attributes: ``classes`` (labels), ``fs`` (Hz), ``channels`` (names), ``length`` (default segment
    length in samples), ``conditions`` (label -> list of [rpm, load_hp] seen in training), ``meta``.
    """
    def __init__(self, model: nn.Module, normalizer, meta: dict) -> None:
        self.model = model.eval()
        self.normalizer = normalizer
        self.meta = meta
        self.classes: list[str] = list(meta["classes"])
        self.fs: float = float(meta["fs"])
        self.channels: list[str] = list(meta["channels"])
        self.length: int = int(meta["length"])
        self.units: str = str(meta.get("units", "g"))
        self.conditions: dict[str, list[list[float]]] = meta.get("conditions", {})
        self._compiled: nn.Module | None = None

    def compile(self) -> TrainedGenerator:
        """Run the network through ``torch.compile`` (inductor) from now on; returns self.

        For bulk generation: on the fast CPU generator it nearly halves the time per segment
        (docs/BENCHMARKS.md, "Generation"), after a one-off compilation of about 40 s per batch size and
        length (cached on disk by inductor for later processes). Every batch is generated at the full
        ``batch_size`` (a short last batch is cut from a full one), so one compilation serves a whole request.
        Outputs equal the eager network's to float32 rounding, not bit for bit, and do not depend on the
        batch size, as in eager mode."""
        if self._compiled is None:
            self._compiled = torch.compile(self.model, dynamic=False)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _check_request(self, label: str, n: int, rpm: float | None, load_hp: float | None,
                       length: int | None) -> tuple[int, float, float, int]:

        if label not in self.classes:
            raise VibganError(f"sample: unknown label {label!r}; this generator knows {self.classes}")
        if isinstance(n, bool) or not isinstance(n, (int,)) and not hasattr(n, "__index__"):
            raise VibganError(f"sample: n must be a whole number of segments, got {n!r}")
        n = int(n)
        if n < 1:
            raise VibganError(f"sample: n must be at least 1, got {n}")
        seen = self.conditions.get(label) or [[0.0, 0.0]]
        try:
            rpm = float(seen[0][0] if rpm is None else rpm)
            load_hp = float(seen[0][1] if load_hp is None else load_hp)
            length = self.length if length is None else int(length)
        except (TypeError, ValueError, OverflowError):
            raise VibganError(f"sample: rpm, load_hp and length must be numbers, got rpm={rpm!r}, "
                              f"load_hp={load_hp!r}, length={length!r}") from None
        if not math.isfinite(rpm) or rpm < 0 or rpm > 100_000:
            raise VibganError(f"sample: rpm must be a shaft speed in 0-100000 rpm, got {rpm!r}")
        if not math.isfinite(load_hp) or load_hp < 0 or load_hp > 10_000:
            raise VibganError(f"sample: load_hp must be a non-negative load in hp, got {load_hp!r}")
        self._warn_outside(label, rpm, load_hp)
        hop = getattr(self.model, "hop", None)
        if hop is None and length != self.length:
            raise VibganError(f"sample: this dense generator produces exactly {self.length} samples, not {length}")
        if hop is not None and (length < hop or length % hop or length > 64 * self.length):
            raise VibganError(
                f"sample: length must be a multiple of {hop} between {hop} and {64 * self.length} samples, got {length}")
        return n, rpm, load_hp, length

    def outside(self, label: str, rpm: float, load_hp: float) -> str | None:
        """How far (rpm, load_hp) lies outside the conditions ``label`` was trained at, in words, or None inside
        them (2 % tolerance on the speed range; loads as recorded)."""
        seen = self.conditions.get(label) or []
        if not seen:
            return None
        rpms, loads = [float(c[0]) for c in seen], [float(c[1]) for c in seen]
        lo, hi = min(rpms), max(rpms)
        parts = []
        if rpm < 0.98 * lo or rpm > 1.02 * hi:
            edge = lo if rpm < lo else hi
            span = f"{lo:g} rpm" if lo == hi else f"{lo:g}-{hi:g} rpm"
            parts.append(f"{rpm:g} rpm is {abs(rpm - edge) / edge:.0%} {'below' if rpm < lo else 'above'} {span}")
        if all(abs(load_hp - x) > 1e-9 for x in loads):
            parts.append(f"load {load_hp:g} hp was never recorded (trained at {', '.join(f'{x:g}' for x in sorted(set(loads)))} hp)")
        return "; ".join(parts) or None

    def condition_coverage(self) -> list[dict[str, Any]]:
        """Every (class, condition) pair over the conditions any class was trained at: ``seen`` in training,
        else ``extrapolated`` (how far, in words, as ``outside`` says) or, inside a class's speed range at a
        load it was recorded at, interpolated (``extrapolated`` None)."""
        conds = sorted({(float(c[0]), float(c[1])) for cs in self.conditions.values() for c in cs})
        out = []
        for label in self.classes:
            for rpm, load in conds:
                seen = self.trained_at(label, rpm, load)
                out.append({"class": label, "rpm": rpm, "load_hp": load, "seen": seen,
                            "extrapolated": None if seen else self.outside(label, rpm, load)})
        return out

    def trained_at(self, label: str, rpm: float, load_hp: float) -> bool:
        """Whether ``label`` was trained at exactly (rpm, load_hp)."""
        return (float(rpm), float(load_hp)) in {(float(c[0]), float(c[1])) for c in self.conditions.get(label) or []}

    def coverage_lines(self) -> list[str]:
        """One line per class: the conditions it was trained at and those of the data set it was not, and how
        far each of those lies outside its own (for the model card and the report)."""
        by: dict[str, list[dict[str, Any]]] = {}
        for c in self.condition_coverage():
            by.setdefault(c["class"], []).append(c)
        lines = []
        for label, cs in by.items():
            seen = ", ".join(f"{c['rpm']:g} rpm / {c['load_hp']:g} hp" for c in cs if c["seen"])
            other = [f"{c['rpm']:g} rpm / {c['load_hp']:g} hp ("
                     + (f"extrapolated: {c['extrapolated']}" if c["extrapolated"] else "interpolated") + ")"
                     for c in cs if not c["seen"]]
            lines.append(f"{label}: seen at {seen or 'no recorded condition'}"
                         + (f"; not recorded at {'; '.join(other)}" if other else "; every condition of the data set"))
        return lines

    def _warn_outside(self, label: str, rpm: float, load_hp: float) -> None:
        """Warn once per (class, condition) when sampling outside the training conditions: extrapolation."""
        how = self.outside(label, rpm, load_hp)
        warned = self.__dict__.setdefault("_warned", set())
        if how is None or (label, rpm, load_hp) in warned:
            return
        warned.add((label, rpm, load_hp))
        warnings.warn(f"sample: class {label!r} outside its training conditions: {how}; the output is "
                      "extrapolated, check its spectra before use", ExtrapolationWarning, stacklevel=4)

    def iter_samples(self, label: str, n: int, *, rpm: float | None = None, load_hp: float | None = None,
                     seed: int | None = None, length: int | None = None, batch_size: int = 64, workers: int = 1):
        """Yield arrays (b, C, T) in physical units, n segments in all, in batches (memory stays flat).

        ``workers`` > 1 (CPU, not compiled): that many threads compute batches side by side, each with
        ``torch.get_num_threads() // workers`` intra-op threads (restored afterwards), and the batches are
        yielded in order. The small convolutions of the fast generator parallelise better across batches than
        within one (docs/BENCHMARKS.md, "Generation"). The numbers are those of ``workers = 1``."""
        request = {"label": label, "n": n, "rpm": rpm, "load_hp": load_hp, "seed": seed, "length": length}
        for _, x in self.iter_requests([request], batch_size=batch_size, workers=workers):
            yield x

    def iter_requests(self, requests: list[dict], *, batch_size: int = 64, workers: int = 1):
        """``iter_samples`` for several requests (dicts of its arguments: label and n, optionally rpm, load_hp,
        seed, length) in one stream, so that workers stay busy across them: yields (request index, (b, C, T))
        in order. Every request is checked before the first batch is made."""
        if isinstance(batch_size, bool) or not hasattr(batch_size, "__index__") or int(batch_size) < 1:
            raise VibganError(f"sample: batch_size must be a whole number >= 1, got {batch_size!r}")
        if isinstance(workers, bool) or not hasattr(workers, "__index__") or int(workers) < 1:
            raise VibganError(f"sample: workers must be a whole number >= 1, got {workers!r}")
        batch_size = int(batch_size)
        plans = [self._plan(r.get("label"), r.get("n"), r.get("rpm"), r.get("load_hp"), r.get("seed"),
                            r.get("length"), batch_size) for r in requests]
        work = [(i, start) for i, p in enumerate(plans) for start in range(0, p["n"], batch_size)]
        compiled = getattr(self, "_compiled", None)
        workers = min(int(workers), len(work))
        if workers <= 1 or compiled is not None or self.device.type != "cpu":
            blocks: dict[int, dict] = {i: {} for i in range(len(plans))}
            for i, start in work:
                yield i, self._batch(plans[i], start, blocks[i])
            return
        yield from self._threaded(plans, work, workers)

    def _plan(self, label: str, n: int, rpm: float | None, load_hp: float | None, seed: int | None,
              length: int | None, batch_size: int) -> dict:
        """One checked request: n, rpm, load_hp, length, the class index and the base seed."""
        n, rpm, load_hp, length = self._check_request(label, n, rpm, load_hp, length)
        try:
            base = int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())
            torch.Generator().manual_seed(base)
        except (TypeError, ValueError, OverflowError, RuntimeError):
            raise VibganError(f"sample: seed must be a whole number of at most 64 bits, got {seed!r}") from None
        return {"label": label, "n": n, "rpm": rpm, "load_hp": load_hp, "length": length, "base": base,
                "k": self.classes.index(label), "batch_size": batch_size}

    def _latent(self, plan: dict, a: int, b: int, blocks: dict[int, tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """Noise of segments a..a+b-1: segment i's comes from block i // LATENT_BLOCK, seeded by (seed, block),
        so the output depends on the seed and the index, never on batch_size or workers."""
        first, last = a // LATENT_BLOCK, (a + b - 1) // LATENT_BLOCK
        for j in range(first, last + 1):
            if j not in blocks:
                g = torch.Generator(device=self.device).manual_seed((plan["base"] * 1_000_003 + j) % (2**63 - 1))
                blocks[j] = self.model.sample_latent(LATENT_BLOCK, plan["length"], g, self.device)
        for j in [j for j in blocks if j < first]:
            del blocks[j]
        parts = [blocks[j] for j in range(first, last + 1)]
        off = a - first * LATENT_BLOCK
        if len(parts) == 1:  # a batch within one block (batch sizes dividing LATENT_BLOCK): views, no copy
            return tuple(x[off: off + b] for x in parts[0])
        return tuple(torch.cat([p[i] for p in parts])[off: off + b] for i in range(len(parts[0])))

    def _batch(self, plan: dict, done: int, blocks: dict[int, tuple[torch.Tensor, ...]]) -> np.ndarray:
        """Segments done .. done + batch_size - 1 of a request (fewer at its end), in physical units."""
        compiled = getattr(self, "_compiled", None)
        net = self.model if compiled is None else compiled
        b = min(plan["batch_size"], plan["n"] - done)
        full = b if compiled is None else plan["batch_size"]  # compiled: one shape for every batch
        label, rpm, load_hp = plan["label"], plan["rpm"], plan["load_hp"]
        with torch.inference_mode():
            y = torch.full((full,), plan["k"], dtype=torch.long, device=self.device)
            cond = torch.tensor([[rpm, load_hp]], dtype=torch.float32, device=self.device).expand(full, 2)
            x = net(self._latent(plan, done, full, blocks), y, cond)[:b].float()
            x = self.normalizer.inverse(x, [label] * b, conds=(rpm, load_hp)) if self.normalizer is not None else x
            return x.cpu().numpy().astype("float32", copy=False)

    def _threaded(self, plans: list[dict], work: list[tuple[int, int]], workers: int):
        """Every (request, start) batch on ``workers`` threads of 1/workers of the intra-op threads each,
        yielded in order, at most 2 x workers batches in flight."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // workers))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vibgan-sample") as pool:
                pending: deque = deque()
                try:
                    for i, start in work:
                        pending.append((i, pool.submit(self._batch, plans[i], start, {})))
                        if len(pending) >= 2 * workers:
                            j, f = pending.popleft()
                            yield j, f.result()
                    while pending:
                        j, f = pending.popleft()
                        yield j, f.result()
                finally:
                    for _, f in pending:  # a consumer that stops early (or an error): nothing more is computed
                        f.cancel()
        finally:
            torch.set_num_threads(threads)

    def sample(self, label: str, n: int, *, rpm: float | None = None, load_hp: float | None = None,
               seed: int | None = None, length: int | None = None, batch_size: int = 64, workers: int = 1):
        """n segments of ``label`` at (rpm, load_hp): ndarray (n, C, T) float32 in physical units.

        rpm and load_hp default to the first condition seen in training for that label; the same seed
        gives the same output. Requests over 2 GiB are refused: use iter_samples or pipelines/generate.py.
        ``workers``: batches computed side by side on that many threads (``iter_samples``).
        """

        n, _, _, length = self._check_request(label, n, rpm, load_hp, length)
        nbytes = n * length * len(self.channels) * 4
        if nbytes > MAX_SAMPLE_BYTES:
            raise VibganError(
                f"sample: {n} x {length} samples would need {nbytes / 1024**3:.1f} GiB in memory (limit 2 GiB); "
                "use iter_samples() or pipelines/generate.py, which write in batches")
        return np.concatenate(list(self.iter_samples(label, n, rpm=rpm, load_hp=load_hp, seed=seed,
                                                     length=length, batch_size=batch_size, workers=workers)),
                              axis=0)

    # ---- persistence: safetensors weights + JSON, no pickle -------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``generator.safetensors`` and ``generator.json`` into ``directory`` (created)."""

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
        wtmp, mtmp = directory / ".generator.safetensors.tmp", directory / ".generator.json.tmp"
        try:
            # both files are written beside the old ones and renamed into place; generator.json records the
            # weights' sha256, so a crash between the two renames is detected at load, never silently mixed
            safetensors.torch.save_file(weights, str(wtmp))
            meta = dict(self.meta)
            meta["normalizer"] = self.normalizer.to_dict() if self.normalizer is not None else None
            meta["weights_sha256"] = sha256_file(wtmp)
            mtmp.write_text(json.dumps(meta, indent=2), encoding="utf-8")
            for tmp in (wtmp, mtmp):
                fsync_file(tmp)
            os.replace(wtmp, directory / "generator.safetensors")
            os.replace(mtmp, directory / "generator.json")
        finally:
            wtmp.unlink(missing_ok=True)
            mtmp.unlink(missing_ok=True)
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> TrainedGenerator:
        """Load a generator saved by ``save``: safetensors weights and JSON only, nothing executed."""

        directory = Path(directory)
        wpath, mpath = directory / "generator.safetensors", directory / "generator.json"
        for p in (wpath, mpath):
            if not p.is_file():
                raise ModelError(f"{p}: missing; a vibgan generator directory holds generator.safetensors and generator.json")
        try:
            meta = json.loads(mpath.read_text(encoding="utf-8"))
            fs = float(meta["fs"])
            if not (math.isfinite(fs) and fs > 0):
                raise ValueError(f"fs: expected a positive sampling rate in Hz, got {meta['fs']!r}")
            model_cfg = dataclass_from_dict(ModelConfig, meta["model"], "model")
            model, _ = build_models(model_cfg, n_classes=len(meta["classes"]), channels=len(meta["channels"]),
                                    length=int(meta["length"]), fs=fs, geometry=meta.get("geometry", "6205"))
            normalizer = Normalizer.from_dict(meta["normalizer"]) if meta.get("normalizer") else None
            if not isinstance(meta.get("conditions", {}), dict):
                raise TypeError(f"conditions: expected a table label -> [[rpm, load_hp], ...], got {meta['conditions']!r}")
        except Exception as e:  # noqa: BLE001 (anything that fails to build from this untrusted description)
            raise ModelError(f"{mpath}: not a valid vibgan generator description ({type(e).__name__}: {e})") from None
        kind = _not_safetensors(wpath)
        if kind is not None:
            raise ModelError(f"{wpath}: not a safetensors file ({kind}); vibgan saves weights as safetensors only, "
                             "so this file was replaced: save the generator again; nothing was loaded")
        want = meta.get("weights_sha256")
        if want is not None:
            if sha256_file(wpath) != want:
                raise ModelError(f"{wpath}: does not match {mpath.name} (weights_sha256 differs): the directory holds "
                                 "parts of two different saves; save the generator again")
        try:
            weights = safetensors.torch.load_file(str(wpath), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise ModelError(f"{wpath}: not a readable safetensors file ({e})") from None
        # knobs added after a model was saved take their identity value (a generator saved before model.variety
        # had an impulse-gain knob has no such buffer): everything else must be there
        try:
            model.load_state_dict(with_optional_buffers(model, weights), strict=True)
        except RuntimeError as e:
            raise ModelError(f"{wpath}: weights do not fit the architecture in {mpath.name} ({e})") from None
        meta.pop("normalizer", None)
        return cls(model.to(device), normalizer, meta)


def generator_meta(cfg: Config, data: TrainData) -> dict:
    """What a saved generator needs besides its weights (JSON-serialisable)."""
    return {
        "format": "vibgan-generator/1", "vibgan_version": vibgan.__version__,
        "model": to_dict(cfg)["model"], "classes": data.classes, "fs": data.fs, "channels": data.channels,
        "length": data.length, "units": data.units, "geometry": data.geometry, "conditions": data.conditions,
        "seed": cfg.train.seed, "steps": cfg.train.steps, "loss": cfg.train.loss,
        "envelope_band": list(data.envelope_band) if data.envelope_band else None,
        "envelope_band_info": data.envelope_band_info or None,
    }


#: Segments per forward pass in ``generate``: on a CPU, batches of a few dozen keep the activations in cache
#: (docs/BENCHMARKS.md: hundreds at once are several times slower per segment)
GENERATE_CHUNK = 32


def generate(G: torch.nn.Module, latent: tuple[torch.Tensor, ...], y: torch.Tensor, cond: torch.Tensor,
             chunk: int = GENERATE_CHUNK) -> torch.Tensor:
    """G's output (B, C, T) in float32 for a latent batch of any size, computed ``chunk`` segments at a time."""
    return torch.cat([G(tuple(part[a: a + chunk] for part in latent), y[a: a + chunk], cond[a: a + chunk]).float()
                      for a in range(0, len(y), chunk)])
