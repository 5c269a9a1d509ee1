#!/usr/bin/env python3
"""Download the official CWRU bearing ``.mat`` files, resumably, and verify them with a sha256 manifest.

Examples
--------
    python data/fetch_cwru.py                       # the 10-class 0 hp 12 kHz drive-end set (10 files)
    python data/fetch_cwru.py --set 10class         # the same classes at 0-3 hp (40 files)
    python data/fetch_cwru.py --files 105 106 --dest /data/cwru
    python data/fetch_cwru.py --list                # the file-number table
    python data/fetch_cwru.py --verify-only         # check files against the manifest, no network

Exit codes: 0 all files present and verified; 2 bad arguments; 3 the server is unreachable or the transfer
failed (run again to resume); 4 a file failed verification (checksum, size, not a MATLAB file, missing);
5 the destination cannot be written.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import sys
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

try:
    from vibgan.cwru import CWRU_10CLASS_0HP, CWRU_BASE_URL, CWRU_FILES
    from vibgan.files import sha256_file, write_text_atomic
except ImportError:  # run from a checkout without installing vibgan
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from vibgan.cwru import CWRU_10CLASS_0HP, CWRU_BASE_URL, CWRU_FILES
    from vibgan.files import sha256_file, write_text_atomic

DEFAULT_DEST = Path(__file__).resolve().parent / "downloads"
MANIFEST = "manifest.json"
#: sha256 of official files, verified from a trustworthy source. CWRU publishes none, and none are
#: invented here: the manifest written on first download is what later runs verify against.
KNOWN_SHA256: dict[int, str] = {}

OK, NETWORK, INTEGRITY, LOCAL = 0, 3, 4, 5
SETS = {
    "10class-0hp": lambda: list(CWRU_10CLASS_0HP),
    "10class": lambda: sorted(n for n, f in CWRU_FILES.items()
                              if f.label in {CWRU_FILES[m].label for m in CWRU_10CLASS_0HP}),
    "12k-de": lambda: sorted(CWRU_FILES),
    "normal": lambda: sorted(n for n, f in CWRU_FILES.items() if f.fault == "normal"),
}
CHUNK = 1 << 16


class FetchError(Exception):
    """A one-line, user-facing failure with the exit code it maps to."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def file_url(base_url: str, number: int) -> str:
    """``base_url`` with ``{number}`` filled in, or ``base_url/<number>.mat`` when it has no placeholder."""
    if "{number}" in base_url:
        return base_url.replace("{number}", str(number))
    return f"{base_url.rstrip('/')}/{number}.mat"




def read_manifest(dest: Path) -> dict:
    path = dest / MANIFEST
    if not path.exists():
        return {"format": "vibgan.cwru-manifest", "version": 1, "files": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data.get("files"), dict):
            raise ValueError("no 'files' object")
    except (OSError, ValueError) as exc:
        raise FetchError(f"{path}: unreadable manifest ({exc}); fix or delete it", INTEGRITY) from None
    return data


def write_manifest(dest: Path, manifest: dict) -> None:
    try:
        write_text_atomic(dest / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise FetchError(f"{dest / MANIFEST}: cannot write ({exc})", LOCAL) from None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else exc
    return str(exc) or type(exc).__name__


def _open(url: str, offset: int, timeout: float):
    req = urllib.request.Request(url, headers={"User-Agent": "vibgan-fetch-cwru/1"})
    if offset:
        req.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 (http(s) URL chosen by the user)


def download(url: str, final: Path, timeout: float) -> None:
    """Fetch ``url`` into ``final`` through ``final.part``, resuming a partial ``.part`` with an HTTP Range."""
    part = final.with_name(final.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    try:
        resp = _open(url, have, timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # nothing left past our offset: the .part is whole if the server's length agrees
            m = re.match(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") or "")
            if m and int(m.group(1)) == have:
                os.replace(part, final)
                return
            part.unlink()
            return download(url, final, timeout)
        raise FetchError(f"{url}: HTTP {exc.code} {exc.reason}", NETWORK) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        raise FetchError(f"cannot reach {url} ({_reason(exc)}); offline? --base-url can point at a mirror",
                         NETWORK) from None
    with resp:
        if have and resp.status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", "") or "")
            if not m or int(m.group(1)) != have:
                raise FetchError(f"{url}: the server resumed at the wrong offset "
                                 f"({resp.headers.get('Content-Range')!r}, expected {have})", NETWORK)
            mode = "ab"
        else:
            have, mode = 0, "wb"  # the server ignored the Range header: start over
        length = resp.headers.get("Content-Length")
        expected = have + int(length) if length and length.isdigit() else None
        try:
            fh = open(part, mode)
        except OSError as exc:
            raise FetchError(f"{part}: cannot write ({exc})", LOCAL) from None
        with fh:
            while True:
                try:
                    block = resp.read(CHUNK)
                except (OSError, http.client.HTTPException) as exc:  # includes timeouts and resets
                    raise FetchError(f"{url}: transfer interrupted ({_reason(exc)}); run again to resume",
                                     NETWORK) from None
                if not block:
                    break
                try:
                    fh.write(block)
                except OSError as exc:
                    raise FetchError(f"{part}: cannot write ({exc})", LOCAL) from None
    size = part.stat().st_size
    if expected is not None and size != expected:
        raise FetchError(f"{url}: incomplete transfer ({size} of {expected} bytes); run again to resume", NETWORK)
    with open(part, "rb") as fh:
        head = fh.read(128)
    if not (head.startswith(b"MATLAB") or head.startswith(b"\x89HDF")):
        part.unlink()
        raise FetchError(f"{url}: not a MATLAB file (starts {head[:24]!r}; an HTML page?)", INTEGRITY)
    os.replace(part, final)


def describe(number: int) -> str:
    f = CWRU_FILES.get(number)
    if f is None:
        return f"{number}.mat (not in the CWRU table)"
    return f"{f.filename:>9}  {f.label:<9} {f.load_hp} hp  {f.rpm:.0f} rpm  {f.fs:.0f} Hz"


def fetch_one(number: int, dest: Path, base_url: str, manifest: dict, *, timeout: float, retries: int,
              force: bool, verify_only: bool) -> str:
    """Make ``dest/<number>.mat`` present and verified; returns a status word for the log line."""
    name = f"{number}.mat"
    final = dest / name
    entry = manifest["files"].get(name)
    known = KNOWN_SHA256.get(number)
    if final.exists() and (not force or verify_only):
        digest = sha256_file(final)
        want = entry["sha256"] if entry else known
        if want and digest != want:
            raise FetchError(f"{final}: checksum mismatch (sha256 {digest[:16]}..., expected {want[:16]}... from "
                             f"{'the manifest' if entry else 'KNOWN_SHA256'}); delete it or pass --force", INTEGRITY)
        status = "verified" if want else "recorded"
    elif verify_only:
        raise FetchError(f"{final}: missing", INTEGRITY)
    else:
        url = file_url(base_url, number)
        for attempt in range(retries + 1):
            try:
                download(url, final, timeout)
                break
            except FetchError as exc:
                interrupted = exc.code == NETWORK and final.with_name(name + ".part").exists()
                if attempt == retries or not interrupted:
                    raise
        digest = sha256_file(final)
        want = known or (entry["sha256"] if entry and not force else None)
        if want and digest != want:
            final.unlink()
            raise FetchError(f"{url}: checksum mismatch (sha256 {digest[:16]}..., expected {want[:16]}...); the file "
                             f"was removed", INTEGRITY)
        status = "downloaded"
        entry = None
    if entry is None or force:
        f = CWRU_FILES.get(number)
        manifest["files"][name] = {
            "sha256": digest, "bytes": final.stat().st_size,
            "url": file_url(base_url, number), "label": f.label if f else None,
            "load_hp": f.load_hp if f else None, "fs": f.fs if f else None,
            "recorded_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
    return status


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="fetch_cwru",
        description="Download official CWRU Bearing Data Center .mat files (resumable, sha256 manifest).",
        epilog="exit codes: 0 ok; 2 bad arguments; 3 unreachable/interrupted (run again to resume); "
               "4 verification failed; 5 destination not writable",
    )
    ap.add_argument("--set", choices=sorted(SETS), default="10class-0hp",
                    help="which files (default: 10class-0hp, the usual 10 classes at 0 hp, 12 kHz drive end)")
    ap.add_argument("--files", type=int, nargs="+", metavar="N", help="explicit CWRU file numbers (overrides --set)")
    ap.add_argument("--loads", type=int, nargs="+", choices=(0, 1, 2, 3), metavar="HP",
                    help="keep only files at these motor loads (hp)")
    ap.add_argument("--dest", type=Path, default=DEFAULT_DEST, help=f"destination folder (default {DEFAULT_DEST})")
    ap.add_argument("--base-url", default=CWRU_BASE_URL,
                    help="URL template with {number}, or a folder URL (default: %(default)s)")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per network operation (default 30)")
    ap.add_argument("--retries", type=int, default=2, help="resume attempts after an interrupted transfer")
    ap.add_argument("--force", action="store_true", help="download again even if present; re-record checksums")
    ap.add_argument("--verify-only", action="store_true", help="check present files against the manifest; no network")
    ap.add_argument("--list", action="store_true", help="print the CWRU file table and exit")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> int:
    if args.list:
        for number in CWRU_FILES:
            print(describe(number))
        return OK
    numbers = list(dict.fromkeys(args.files)) if args.files else SETS[args.set]()
    if args.loads is not None:
        numbers = [n for n in numbers if n not in CWRU_FILES or CWRU_FILES[n].load_hp in set(args.loads)]
    if not numbers or any(n <= 0 for n in numbers):
        raise FetchError(f"nothing to fetch (files {numbers})", 2)
    dest: Path = args.dest
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(f"{dest}: cannot create ({exc})", LOCAL) from None
    manifest = read_manifest(dest)
    manifest["source"] = args.base_url
    failures = []
    for number in numbers:
        try:
            status = fetch_one(number, dest, args.base_url, manifest, timeout=args.timeout, retries=args.retries,
                               force=args.force, verify_only=args.verify_only)
        except FetchError as exc:
            if exc.code != INTEGRITY:
                if not args.verify_only:
                    write_manifest(dest, manifest)
                raise
            failures.append(str(exc))
            print(f"{describe(number)}  FAILED", flush=True)
            continue
        if not args.verify_only:
            write_manifest(dest, manifest)
        entry = manifest["files"].get(f"{number}.mat", {})
        print(f"{describe(number)}  {status}  {entry.get('bytes', 0) / 1e6:.2f} MB  "
              f"sha256 {entry.get('sha256', '?')[:12]}", flush=True)
    if failures:
        raise FetchError(f"{len(failures)} file(s) failed verification: " + " | ".join(failures), INTEGRITY)
    print(f"{len(numbers)} file(s) ready in {dest}", flush=True)
    return OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args)
    except FetchError as exc:
        print(f"fetch_cwru: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("fetch_cwru: interrupted; run again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
