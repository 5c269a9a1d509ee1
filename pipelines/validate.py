#!/usr/bin/env python
"""Score generated vibration segments against real recordings, class by class (docs/METRICS.md).

    python pipelines/validate.py --real ../shared/data/cwru/1797rpm --fake generated.h5 --out runs/val
    python pipelines/validate.py --real ../shared/data/cwru/1797rpm --real-vs-real --out runs/rvr
    python pipelines/validate.py --real DIR --model runs/default/generator --n 256 --out runs/val
    python pipelines/validate.py --config configs/default.toml --fake fake.h5 --out runs/val   # the data a config trains on

By default each real recording is split in time: the held-out last 30 % gives the reference segments
(non-overlapping windows), the first 70 % gives the floor (what two honest samples of reality differ by).
Writes report.json, summary.md, report.html (plots embedded) and the PNG plots to --out, prints the summary.
Exit status: 0 done (1 with --strict when a class fails), 2 on bad input (one-line message, no traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    real = p.add_mutually_exclusive_group()
    real.add_argument("--real", help="directory or file of real recordings (any format vibgan.recordings.load reads)")
    real.add_argument("--config", help="a training config (TOML): the real recordings are the ones it trains on "
                      "(simulated, files or a manifest), at its data.fs, with its train fraction")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with --config: override a config value, as in train.py")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--fake", help="generated-data HDF5 file (exchange format: signals, labels, fs)")
    src.add_argument("--model", help="generator to sample from (directory or registered-model URI)")
    src.add_argument("--real-vs-real", action="store_true",
                     help="sanity check: score the real training windows against the held-out part")
    p.add_argument("--out", default="runs/validate", help="output directory (default runs/validate)")
    p.add_argument("--classes", nargs="+", help="only these labels")
    p.add_argument("--channels", nargs="+",
                   help="channels of the real recordings to compare (default: the generated file's channel names, "
                        "else the first C channels)")
    p.add_argument("--length", type=int, help="segment length T for --real-vs-real / --model (default 4096)")
    p.add_argument("--train-fraction", type=float, default=0.7, help="first part of each recording: the floor")
    p.add_argument("--test-fraction", type=float, default=0.3, help="last part of each recording: held out")
    p.add_argument("--n", type=int, default=256, help="--model: generated segments per class (default 256)")
    p.add_argument("--fs", type=float, help="resample the real recordings to this rate in Hz (resample_poly; "
                   "default: each file's own rate, which must then agree, e.g. 12000 for the CWRU folder)")
    p.add_argument("--geometry", help="bearing geometry for fault frequencies (default 6205, or the --config's)")
    p.add_argument("--envelope-band", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="band-pass (Hz) of the envelope metrics (default: the band the generator was trained with, "
                        "else the most impulsive band of the real training part: the kurtogram)")
    p.add_argument("--no-c2st", action="store_true", help="skip the classifier two-sample test")
    p.add_argument("--no-plots", action="store_true", help="write the tables only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strict", action="store_true", help="exit 1 when any class fails a check")
    p.add_argument("--benchmark", action="store_true", help=argparse.SUPPRESS)  # moved: benchmark.py speed
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.geometry_given = args.geometry is not None
    args.geometry = args.geometry or "6205"
    from vibgan.errors import run_cli

    return run_cli(lambda: _moved() if args.benchmark else run(args))


def _moved() -> int:
    from vibgan.errors import ConfigError

    raise ConfigError("--benchmark: the validation-speed benchmark is `python pipelines/benchmark.py speed` "
                      "(seconds per 10,000 segments and the per-metric split, in docs/BENCHMARKS.md)")


def _generic(names: list[str]) -> bool:
    return all(n.startswith("ch") and n[2:].isdigit() for n in names)


def _select(rec, idx: list[int]):
    from vibgan import recordings

    names = list(rec.meta.get("sensor") or [])
    meta = dict(rec.meta, sensor=[names[i] for i in idx] if len(names) == rec.channels else names[: len(idx)])
    return recordings.Recording(rec.signal[idx], rec.fs, meta)


def _load_real(args: argparse.Namespace, channels: list[str] | None, n_channels: int | None):
    """Real recordings with one channel layout: --channels, else the first C channels (C from the generated
    data), else every channel when all recordings agree, else the first channel name they all share; resampled
    to --fs when given, else at their own rate."""
    from vibgan import catalog
    from vibgan.errors import DataError

    if args.config:
        recs = _config_recordings(args, channels)
        path = Path(args.config)
    else:
        if not args.real:
            raise DataError("--real: expected a directory or file of real recordings (or --config)")
        path = Path(args.real)
        if not path.exists():
            raise DataError(f"--real {path}: not found")
        recs = catalog.load_many(path if path.is_dir() else [path], channels=channels, classes=args.classes,
                                 fs=args.fs)
    if channels is not None:
        return recs
    if n_channels is not None:
        short = [r for r in recs if r.channels < n_channels]
        if short:
            raise DataError(f"{short[0].source}: has {short[0].channels} channel(s), the generated data "
                            f"{n_channels}; pick real channels with --channels")
        return [_select(r, list(range(n_channels))) for r in recs]
    if len({r.channels for r in recs}) == 1:
        return recs
    common = [n for n in (recs[0].meta.get("sensor") or []) if all(n in (r.meta.get("sensor") or []) for r in recs)]
    if not common:
        raise DataError(f"--real {path}: recordings have different channels and no channel name in common; "
                        "pick channels with --channels")
    print(f"note: recordings have different channel counts; comparing their common channel {common[0]!r} "
          "(choose with --channels)")
    return [_select(r, [list(r.meta["sensor"]).index(common[0])]) for r in recs]


def _config_recordings(args: argparse.Namespace, channels: list[str] | None):
    """The recordings ``--config`` trains on (vibgan.datasets.load_recordings), with --classes / --channels applied."""
    from vibgan.config import load_config
    from vibgan.datasets import load_recordings
    from vibgan.errors import DataError

    cfg = load_config(args.config, list(args.overrides))
    if cfg.data.source == "sinusoid":
        raise DataError(f"--config {args.config}: data.source = 'sinusoid' has no recordings to validate against")
    recs = load_recordings(cfg)
    if args.classes:
        recs = [r for r in recs if r.label in set(args.classes)]
        if not recs:
            raise DataError(f"--config {args.config}: none of --classes {args.classes} is among its recordings")
    if channels:
        names = list(recs[0].meta.get("sensor") or [])
        missing = [c for c in channels if c not in names]
        if missing:
            raise DataError(f"--config {args.config}: channels {missing} not among its recordings' {names}")
        recs = [_select(r, [list(r.meta.get("sensor") or names).index(c) for c in channels]) for r in recs]
    if args.fs and abs(recs[0].fs - args.fs) > 1e-6 * args.fs:
        raise DataError(f"--fs {args.fs:g}: with --config the rate is the config's data.fs ({recs[0].fs:g} Hz); "
                        "set it with --set data.fs=...")
    args.train_fraction = cfg.data.train_fraction
    args.test_fraction = 1.0 - cfg.data.train_fraction
    args.geometry = args.geometry if args.geometry_given else _config_geometry(cfg)
    return recs


def _config_geometry(cfg):
    from vibgan.config import geometry_of

    return geometry_of(cfg.data)


def _fractions(args: argparse.Namespace) -> tuple[float, float, float]:
    from vibgan.errors import DataError

    tr, te = args.train_fraction, args.test_fraction
    if not (0 < tr < 1 and 0 < te < 1 and tr + te <= 1 + 1e-12):
        raise DataError(f"--train-fraction {tr} / --test-fraction {te}: expected shares in (0, 1) summing to <= 1")
    val = 1.0 - tr - te
    return (tr, 0.0, 1.0 - tr) if val < 1e-9 else (tr, val, te)


def run(args: argparse.Namespace) -> int:
    import warnings

    import numpy as np

    from vibgan import validate
    from vibgan.cwru import label_sort_key
    from vibgan.errors import DataError
    from vibgan.exchange import read_generated
    from vibgan.generator import ExtrapolationWarning
    from vibgan.report import write_report

    meta: dict = {"real": f"the recordings {args.config} trains on" if args.config else str(args.real)}
    units = "g"
    fake = gen_model = None
    if args.fake:
        gen = read_generated(args.fake)
        fs, (_, n_ch, length) = gen.fs, gen.signals.shape
        units = gen.units
        channels = args.channels or (None if _generic(gen.channels) else gen.channels)
        recs = _load_real(args, channels, n_ch)
        fake = validate.group_by_label(gen.signals, gen.labels)
        meta.update(mode="generated file", fake=str(args.fake), provenance=gen.provenance)
    elif args.model:
        gen_model = _load_model(args.model)
        fs, length, units = gen_model.fs, args.length or gen_model.length, gen_model.units
        recs = _load_real(args, args.channels or list(gen_model.channels), None)
        n_ch = len(gen_model.channels)
        meta.update(mode="sampled model", model=str(args.model), n_per_class=args.n, seed=args.seed)
    elif args.real_vs_real:
        recs = _load_real(args, args.channels, None)
        fs, length, n_ch = recs[0].fs, args.length or 4096, recs[0].channels
        meta.update(mode="real vs real (training part scored against the held-out part)")
    else:
        raise DataError("expected one of --fake FILE.h5, --model URI or --real-vs-real")

    # The generated data must fit the real data: same fs, channels, segment length and known labels.
    if abs(recs[0].fs - fs) > 1e-6 * fs:
        raise DataError(f"{args.fake or args.model}: fs = {fs:g} Hz but the real recordings are sampled at "
                        f"{recs[0].fs:g} Hz")
    real_units = {str(r.meta.get("units") or "unknown") for r in recs}
    if units != "unknown" and real_units - {"unknown"} and units not in real_units:
        raise DataError(f"{args.fake or args.model}: units {units!r} but the real recordings are in "
                        f"{sorted(real_units)}; convert one of them first")
    if recs[0].channels != n_ch:
        raise DataError(f"{args.fake or args.model}: {n_ch} channel(s) but the real recordings have "
                        f"{recs[0].channels}; pick real channels with --channels")
    real_train, real_test = validate.real_segments(recs, length, _fractions(args))
    short = min(recs, key=lambda r: r.samples)
    if not real_test:
        raise DataError(f"{short.source}: the held-out part is shorter than one segment of {length} samples")
    if fake is not None:
        unknown = sorted(set(fake) - set(real_test), key=label_sort_key)
        if unknown and args.classes is None:
            raise DataError(f"{args.fake}: labels {unknown} have no real recording under {args.real or args.config}; real labels "
                            f"are {sorted(real_test, key=label_sort_key)} (or pick --classes)")
        keep = [c for c in fake if c in real_test]
        if not keep:
            raise DataError(f"{args.fake}: none of the generated labels {sorted(fake)} is among the real ones")
        fake = {c: fake[c] for c in sorted(keep, key=label_sort_key)}
    elif args.model:
        fake = {}
        for i, lab in enumerate(sorted(real_test, key=label_sort_key)):
            if lab not in gen_model.classes:
                raise DataError(f"{args.model}: the generator does not know class {lab!r}; it knows "
                                f"{gen_model.classes} (pick --classes)")
            rec = next(r for r in recs if r.label == lab)
            rpm, load = rec.meta.get("rpm"), rec.meta.get("load_hp")
            with warnings.catch_warnings():  # said in the report's conditions section instead
                warnings.simplefilter("ignore", ExtrapolationWarning)
                fake[lab] = np.asarray(gen_model.sample(lab, args.n, rpm=rpm, load_hp=load, seed=args.seed + i,
                                                        length=length), dtype=np.float32)
            meta.setdefault("conditions", []).append(_judged_at(gen_model, lab, rpm, load, rec.source))
    else:
        fake = {c: real_train[c] for c in sorted(real_train, key=label_sort_key)}
    fcs = validate.fault_frequencies(recs, args.geometry)
    band, band_info = _envelope_band(args, gen_model, meta)
    t0 = time.perf_counter()
    report = validate.fidelity_report(real_test, fake, fs, real_train=real_train, fault_freqs=fcs,
                                      c2st=not args.no_c2st, seed=args.seed, meta=meta, envelope_band=band,
                                      envelope_band_info=band_info)
    elapsed = time.perf_counter() - t0
    names = (("held-out real (last part)", "training real (first part)") if args.real_vs_real
             else ("real (held-out)", "generated"))
    title = "vibgan real-vs-real sanity check" if args.real_vs_real else "vibgan fidelity report"
    out = write_report(report, args.out, plots=False if args.no_plots else None, real=real_test,
                                fake=fake, fault_freqs=fcs, units=units, seed=args.seed, names=names, title=title)
    print(report.summary_markdown())
    print(f"scored {sum(len(v) for v in fake.values())} segments in {elapsed:.1f} s; report: "
          f"{(Path(out) / 'report.html').resolve()}")
    return 1 if args.strict and not report.passed else 0


def _judged_at(gen, label: str, rpm, load, source: str) -> str:
    """What one class was generated at and judged against, and whether the generator saw that condition."""
    if rpm is None:
        return f"{label}: generated at the generator's own conditions and judged against {source} (it records no speed)"
    rpm, load = float(rpm), float(load or 0.0)
    how = gen.outside(label, rpm, load)
    where = ("a condition it was trained at" if gen.trained_at(label, rpm, load) else
             f"extrapolated: {how}" if how else "between the speeds it was trained at (interpolated)")
    return (f"{label}: generated at {rpm:g} rpm / {load:g} hp and judged against the real recording there "
            f"({source}); for this class that is {where}")


def _envelope_band(args: argparse.Namespace, gen_model, meta: dict):
    """--envelope-band, else the band the generator was trained with (its meta, or the generated file's
    provenance), else None: fidelity_report chooses it from the real training part."""
    if args.envelope_band:
        return list(args.envelope_band), {"source": "--envelope-band"}
    gmeta = (gen_model.meta if gen_model is not None else (meta.get("provenance") or {}).get("generator")) or {}
    if gmeta.get("envelope_band"):
        return gmeta["envelope_band"], {**(gmeta.get("envelope_band_info") or {}),
                                        "source": "the generator's training (" + str((gmeta.get("envelope_band_info")
                                                                                     or {}).get("source", "?")) + ")"}
    return None, None


def _load_model(uri: str):
    from vibgan.errors import VibganError

    try:
        from vibgan.registry import load_generator
    except ImportError:
        raise VibganError(f"--model {uri}: sampling a model needs vibgan.registry.load_generator, which this "
                          "installation does not have yet; generate a file with pipelines/generate.py and "
                          "pass it with --fake") from None
    return load_generator(uri)


if __name__ == "__main__":
    sys.exit(main())
