#!/usr/bin/env python
"""Generate synthetic vibration segments from a trained or registered generator.

    python pipelines/generate.py --model models:/vibgan-sim@champion --n 1000 --out generated.h5
    python pipelines/generate.py --model runs/default/generator --n 200 --labels inner outer --rpm 1750 \\
        --seed 7 --out gen.h5 --parquet gen.parquet --wav-dir gen_wav

--n is the number of segments per label (all labels of the generator unless --labels). Output is the
HDF5 exchange format (signals (N, C, T) float32 in physical units, labels, rpm, load_hp; attributes fs,
units, provenance), written batch by batch (memory stays flat for any n) under a temporary name and
renamed into place only when complete: an interrupted run leaves no half-written file. Label i of the
generator uses seed + i, so a label's segments do not depend on which other labels were asked for.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

MAX_WAV_FILES = 100_000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="models:/NAME@ALIAS, models:/NAME/VERSION, runs:/ID/model or a directory")
    p.add_argument("--n", type=int, required=True, help="segments per label")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="labels to generate (default: every class)")
    p.add_argument("--rpm", type=float, help="shaft speed in rpm (default: each label's first training speed)")
    p.add_argument("--load-hp", type=float, help="load in hp (default: each label's first training load)")
    p.add_argument("--length", type=int, help="samples per segment (default: the training segment length)")
    p.add_argument("--seed", type=int, help="random seed (default: drawn at random and recorded in the file)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="segments generated per batch (default 64: cache-sized activations; the output does not "
                        "depend on it)")
    p.add_argument("--workers", type=int,
                   help="threads computing batches side by side on a CPU, each with its share of the cores (default: 2 "
                        "where there are 2 or more cores and no --compile, else 1; the output does not depend on it)")
    p.add_argument("--compile", action="store_true",
                   help="run the network through torch.compile: 20-60 s once per batch size and length (cached on "
                        "disk), for long runs; on 2 cores about as fast as the default 2 workers (docs/BENCHMARKS.md)")
    p.add_argument("--out", required=True, help="output HDF5 file (exchange format)")
    p.add_argument("--parquet", help="also write a Parquet file: one row per segment, one list column per channel")
    p.add_argument("--wav-dir", help="also write one float32 WAV file per segment into this new folder")
    p.add_argument("--tracking-uri", help="MLflow tracking URI for models:/ and runs:/ (default: MLFLOW_TRACKING_URI "
                                          "or mlflow.db in the project folder / VIBGAN_HOME)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from vibgan.errors import run_cli

    _STOP["requested"] = False
    previous = signal.signal(signal.SIGTERM, _sigterm)  # SIGTERM cleans up like Ctrl-C
    try:
        return run_cli(lambda: run(args), f"interrupted: nothing was written to {args.out}")
    finally:
        signal.signal(signal.SIGTERM, previous)


#: set by SIGTERM; the write loop checks it after every batch
_STOP = {"requested": False}


def _sigterm(signum, frame):
    """Raise KeyboardInterrupt where the main thread is, and leave a flag the write loop checks: a
    handler that fires inside a ``__del__`` or a weakref callback has its exception swallowed by Python
    ("Exception ignored in ..."), and the signal would otherwise be lost."""
    _STOP["requested"] = True
    raise KeyboardInterrupt


def check_request(args: argparse.Namespace) -> None:
    """Refuse requests that cannot be right before loading anything (VibganError, one line)."""
    from vibgan.errors import VibganError

    if args.n < 1:
        raise VibganError(f"--n {args.n}: expected at least 1 segment per label")
    if args.batch_size < 1:
        raise VibganError(f"--batch-size {args.batch_size}: expected at least 1")
    if args.workers is not None and args.workers < 1:
        raise VibganError(f"--workers {args.workers}: expected at least 1")
    if args.rpm is not None and not (math.isfinite(args.rpm) and 0 <= args.rpm <= 100_000):
        raise VibganError(f"--rpm {args.rpm:g}: expected a shaft speed in 0-100000 rpm")
    if args.load_hp is not None and not (math.isfinite(args.load_hp) and 0 <= args.load_hp <= 10_000):
        raise VibganError(f"--load-hp {args.load_hp:g}: expected a non-negative load in hp")
    if args.length is not None and args.length < 1:
        raise VibganError(f"--length {args.length}: expected a positive number of samples")
    if args.seed is not None and not 0 <= args.seed < 2**63:
        raise VibganError(f"--seed {args.seed}: expected 0 <= seed < 2**63")
    if args.labels and len(set(args.labels)) != len(args.labels):
        raise VibganError(f"--labels {' '.join(args.labels)}: a label is repeated")
    out = Path(args.out)
    if out.is_dir():
        raise VibganError(f"--out {out}: is a folder; expected a file name such as generated.h5")
    if args.wav_dir:
        w = Path(args.wav_dir)
        if w.exists() and (not w.is_dir() or any(w.iterdir())):
            raise VibganError(f"--wav-dir {w}: exists and is not an empty folder; choose a new folder")


def plan(gen, args: argparse.Namespace) -> list[dict]:
    """Per label: n, rpm, load_hp, length and seed, checked by the generator; VibganError if any is wrong."""
    from vibgan.errors import VibganError

    labels = args.labels or list(gen.classes)
    unknown = [lab for lab in labels if lab not in gen.classes]
    if unknown:
        raise VibganError(f"--labels: unknown {unknown}; this generator knows {gen.classes}")
    jobs = []
    for lab in labels:
        n, rpm, load, length = gen._check_request(lab, args.n, args.rpm, args.load_hp, args.length)
        jobs.append({"label": lab, "n": n, "rpm": rpm, "load_hp": load, "length": length,
                     "seed": int(args.seed) + gen.classes.index(lab)})
    if len({j["length"] for j in jobs}) != 1:  # pragma: no cover (one --length for all)
        raise VibganError("--length: every label must have the same segment length")
    return jobs


def check_space(jobs: list[dict], channels: int, args: argparse.Namespace) -> int:
    """Bytes the outputs need; VibganError when the disk holding them has less free space."""
    from vibgan.errors import VibganError
    from vibgan.exchange import GeneratedWriter

    length = jobs[0]["length"]
    per = channels * length * 4
    total_n = sum(j["n"] for j in jobs)
    need = {}
    targets = [(Path(args.out), GeneratedWriter.file_bytes(total_n, channels, length))]  # whole HDF5 chunks
    if args.parquet:
        targets.append((Path(args.parquet), total_n * (per + 256)))  # float32 lists, usually smaller compressed
    if args.wav_dir:
        targets.append((Path(args.wav_dir), total_n * (per + 256)))
        if total_n > MAX_WAV_FILES:
            raise VibganError(f"--wav-dir: {total_n} segments would make {total_n} WAV files (limit {MAX_WAV_FILES}); "
                              "use the HDF5 or Parquet output for large sets")
    for path, nbytes in targets:
        parent = _existing(path.resolve().parent)  # temp files are written beside the target
        dev = os.stat(parent).st_dev
        need.setdefault(dev, [parent, 0])
        need[dev][1] += int(nbytes)
    for parent, nbytes in need.values():
        free = shutil.disk_usage(parent).free
        if nbytes > free:
            raise VibganError(f"{total_n} segments of {channels} x {jobs[0]['length']} samples need "
                              f"{_size(nbytes)} on the disk holding {parent}, which has {_size(free)} free; ask "
                              "for fewer segments or write elsewhere")
    return sum(v[1] for v in need.values())


def writable(path: Path, flag: str) -> None:
    """Create ``path``'s folder and prove a file can be written there (a probe file, removed), before any work
    or message; remove what writers killed earlier (SIGKILL) left beside ``path``."""
    from vibgan.errors import DataError
    from vibgan.files import remove_stale_temps, temp_beside

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temp_beside(path).unlink()
    except OSError as e:
        raise DataError(f"{flag} {path}: cannot write in the folder {path.parent} ({e.strerror or e})") from None
    for tmp, size in remove_stale_temps(path):
        print(f"removed {tmp} ({_size(size)}): a partial file left by an earlier run that was killed")


def _existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{int(nbytes)} B"
        nbytes /= 1024
    return f"{nbytes:.1f} PiB"  # pragma: no cover


def run(args: argparse.Namespace) -> int:
    import numpy as np

    import vibgan
    from vibgan.device import keep_freed_memory

    check_request(args)
    keep_freed_memory()  # 25-40 % faster eager generation on a CPU (docs/BENCHMARKS.md, "Generation")
    if args.seed is None:
        args.seed = int(np.random.default_rng().integers(0, 2**31 - 1))
    gen = vibgan.load_generator(args.model, device=args.device, **({"tracking_uri": args.tracking_uri}
                                                                     if args.tracking_uri else {}))
    if args.compile:
        gen.compile()
    if args.workers is None:
        import torch

        args.workers = 2 if gen.device.type == "cpu" and torch.get_num_threads() >= 2 and not args.compile else 1
    jobs = plan(gen, args)
    need = check_space(jobs, len(gen.channels), args)
    total = sum(j["n"] for j in jobs)
    length = jobs[0]["length"]
    out = Path(args.out)
    for target, flag in ((out, "--out"), (Path(args.parquet) if args.parquet else None, "--parquet")):
        if target is not None:
            writable(target, flag)
    prov = provenance(gen, args, jobs)
    what = ", ".join(f"{j['label']} x {j['n']}" for j in jobs)
    print(f"generating {total} segments ({what}) of "
          f"{len(gen.channels)} x {length} samples at {gen.fs:g} Hz, about {_size(need)}, seed {args.seed}")
    t0 = time.perf_counter()
    timing = write_all(gen, jobs, args, prov)
    wall = time.perf_counter() - t0
    after = timing.get("after_first_per_s")
    rate = f"{total / wall:.0f} segments/s"
    if after:
        rate += (f"; {after:.0f} segments/s after the first batch of {timing['first_n']}, which took "
                 f"{timing['first_s']:.1f} s" + (" with compilation" if args.compile else ""))
    print(f"wrote {out} ({total} segments, {rate})"
          + (f", {args.parquet}" if args.parquet else "") + (f", {args.wav_dir}/" if args.wav_dir else ""))
    return 0


def provenance(gen, args: argparse.Namespace, jobs: list[dict]) -> dict:
    """Model URI and version, generator description, request and seed: what makes the file reproducible."""
    import vibgan

    reg = gen.meta.get("registry", {})
    meta = {k: v for k, v in gen.meta.items() if k not in ("registry", "source_uri", "conditions")}
    return {"model_uri": args.model, "model_source": gen.meta.get("source_uri"),
            "model_name": reg.get("name"), "model_version": reg.get("version"), "model_run_id": reg.get("run_id"),
            "generator": meta, "seed": args.seed, "seed_rule": "label i of the generator's classes uses seed + i",
            "request": [{k: j[k] for k in ("label", "n", "rpm", "load_hp", "length", "seed")} for j in jobs],
            "batch_size": args.batch_size, "workers": args.workers, "compiled": bool(args.compile), "device": args.device, "vibgan_version": vibgan.__version__,
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "command": " ".join(["pipelines/generate.py", *sys.argv[1:]])}


def write_all(gen, jobs: list[dict], args: argparse.Namespace, prov: dict) -> dict:
    """Stream every batch into the HDF5 writer (and Parquet/WAV beside it); rename all into place at the end,
    or delete the partial files on any error or interruption. Returns the timing: seconds from the start to
    the first batch (with compilation, where --compile), and the rate after it.

    The writing runs in this thread. A writer thread was tried (2026-12-07, 2-core host): no gain, since the
    network's two threads keep both cores busy and the HDF5 write (about 2.3 ms per batch of 64, some 9 % of
    the time) has no idle core to run on (docs/BENCHMARKS.md, "Generation: where the time goes on 2 cores")."""
    from tqdm.auto import tqdm

    from vibgan.exchange import GeneratedWriter

    length = jobs[0]["length"]
    total = sum(j["n"] for j in jobs)
    pq = _ParquetOut(Path(args.parquet), gen.channels) if args.parquet else None
    wav = _WavOut(Path(args.wav_dir), gen.fs) if args.wav_dir else None
    writer = GeneratedWriter(args.out, gen.fs, gen.channels, length, units=gen.units, provenance=prov,
                             expected_rows=total)
    t0 = time.perf_counter()
    timing: dict = {}
    try:
        with tqdm(total=total, unit="seg", desc="generate", disable=args.no_progress, dynamic_ncols=True) as bar:
            requests = [{"label": j["label"], "n": j["n"], "rpm": j["rpm"], "load_hp": j["load_hp"], "seed": j["seed"],
                         "length": length} for j in jobs]
            done = [0] * len(jobs)
            for i, x in gen.iter_requests(requests, batch_size=args.batch_size, workers=args.workers):  # (b, C, T)
                if not timing:
                    timing = {"first_s": time.perf_counter() - t0, "first_n": len(x)}
                j = jobs[i]
                writer.append(x, j["label"], j["rpm"], j["load_hp"])
                if pq is not None:
                    pq.append(x, j, done[i])
                if wav is not None:
                    wav.append(x, j["label"], done[i])
                done[i] += len(x)
                bar.update(len(x))
                if _STOP["requested"]:  # a SIGTERM whose KeyboardInterrupt was swallowed
                    raise KeyboardInterrupt
        rest = time.perf_counter() - t0 - timing["first_s"]
        if total > timing["first_n"] and rest > 0:
            timing["after_first_per_s"] = (total - timing["first_n"]) / rest
        if pq is not None:
            pq.close()
        if wav is not None:
            wav.close()
        writer.close()
    except BaseException:
        writer.abort()
        for extra in (pq, wav):
            if extra is not None:
                extra.abort()
        raise
    return timing


class _ParquetOut:
    """Parquet rows (label, index, rpm, load_hp, signal_<channel> list<float32>), to a temp file renamed at close."""

    def __init__(self, path: Path, channels: list[str]) -> None:
        from vibgan.errors import DataError
        from vibgan.files import temp_beside

        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise DataError(f"--parquet {path}: needs pyarrow (pip install 'vibgan[parquet]')") from None
        self.pa, self.path, self.channels = pa, path, channels
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temp_beside(path)  # the umask's mode, and a pid in the name for remove_stale_temps
        fields = [("label", pa.string()), ("index", pa.int64()), ("rpm", pa.float64()), ("load_hp", pa.float64())]
        fields += [(f"signal_{c}", pa.list_(pa.float32())) for c in channels]
        self.schema = pa.schema(fields)
        self.writer = pq.ParquetWriter(str(self.tmp), self.schema)

    def append(self, x, job: dict, start: int) -> None:
        import numpy as np

        pa, b = self.pa, x.shape[0]
        cols = [pa.array([job["label"]] * b, pa.string()), pa.array(np.arange(start, start + b), pa.int64()),
                pa.array(np.full(b, job["rpm"]), pa.float64()), pa.array(np.full(b, job["load_hp"]), pa.float64())]
        for c in range(x.shape[1]):
            flat = pa.array(np.ascontiguousarray(x[:, c, :]).reshape(-1), pa.float32())
            cols.append(pa.ListArray.from_arrays(pa.array(np.arange(0, b * x.shape[2] + 1, x.shape[2]), pa.int32()),
                                                 flat))
        self.writer.write_table(pa.Table.from_arrays(cols, schema=self.schema))

    def close(self) -> None:
        self.writer.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class _WavOut:
    """One float32 WAV per segment (``<label>_<index>.wav``, channels interleaved) in a temp folder renamed at close."""

    def __init__(self, path: Path, fs: float) -> None:
        from vibgan.errors import DataError
        from vibgan.files import umask

        if abs(fs - round(fs)) > 1e-6:
            raise DataError(f"--wav-dir: WAV needs a whole sampling rate in Hz, the generator has {fs}")
        self.path, self.rate = path, int(round(fs))
        path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(self.tmp, 0o777 & ~umask())

    def append(self, x, label: str, start: int) -> None:
        from scipy.io import wavfile

        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        for i in range(x.shape[0]):
            wavfile.write(self.tmp / f"{safe}_{start + i:07d}.wav", self.rate, x[i].T.astype("float32"))

    def close(self) -> None:
        if self.path.is_dir():
            self.path.rmdir()  # checked empty before work started
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
