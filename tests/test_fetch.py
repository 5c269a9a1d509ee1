"""data/fetch_cwru.py against a local HTTP server on 127.0.0.1 serving .mat files the tests write."""

from __future__ import annotations

import hashlib
import io
import json
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from helpers import load_script

from vibgan.catalog import catalog
from vibgan.cwru import CWRU_10CLASS_0HP, CWRU_FILES
from vibgan.recordings import load
from vibgan.spectral import fft_magnitude

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "data" / "fetch_cwru.py"
FS = 12000.0


fetch = load_script("data/fetch_cwru.py")


def mat_bytes(number: int, f0: float = 50.0, n: int = 24000) -> bytes:
    """A CWRU-style v5 .mat file: X<nnn>_DE_time / _FE_time / _BA_time (N, 1) in g and X<nnn>RPM."""
    x = (0.5 * np.sin(2 * np.pi * f0 * np.arange(n) / FS))[:, None]
    buf = io.BytesIO()
    var = CWRU_FILES[number].variable if number in CWRU_FILES else number
    tag = f"X{var:03d}"
    scipy.io.savemat(buf, {f"{tag}_DE_time": x, f"{tag}_FE_time": 0.2 * x, f"{tag}_BA_time": 0.1 * x,
                           f"{tag}RPM": np.array([[1797.0]])})
    return buf.getvalue()


class Server:
    """A tiny file server that honours 'Range: bytes=N-' and logs every request."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.log: list[tuple[str, str | None]] = []
        self.ignore_range = False
        self.cut_next: int | None = None  # send only this many bytes of the next response, then hang up
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.log.append((self.path, rng))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                m = re.match(r"bytes=(\d+)-$", rng or "")
                if m and not server.ignore_range:
                    start = int(m.group(1))
                    if start >= len(body):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(body)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                payload = body[start:]
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if server.cut_next is not None:
                    payload, server.cut_next = payload[: server.cut_next], None
                    self.wfile.write(payload)
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/files/{{number}}.mat"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def run(server: Server, dest: Path, *args: str) -> int:
    return fetch.main(["--dest", str(dest), "--base-url", server.url, "--timeout", "10", *args])


def test_fetch_downloads_verifies_and_loads(server, tmp_path, capsys):
    body = mat_bytes(105)
    server.files["/files/105.mat"] = body
    assert run(server, tmp_path, "--files", "105") == 0
    assert (tmp_path / "105.mat").read_bytes() == body
    assert not list(tmp_path.glob("*.part"))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    entry = manifest["files"]["105.mat"]
    assert entry["sha256"] == hashlib.sha256(body).hexdigest() and entry["bytes"] == len(body)
    assert entry["label"] == "IR_7" and entry["load_hp"] == 0
    rec = load(tmp_path / "105.mat")
    assert (rec.label, rec.fs, rec.meta["rpm"], rec.meta["sensor"]) == ("IR_7", 12000, 1797, ["DE", "FE", "BA"])
    freqs, mag = fft_magnitude(rec.signal[0], rec.fs)
    assert freqs[np.argmax(mag)] == pytest.approx(50.0, abs=0.5)
    # a second run downloads nothing and verifies against the manifest
    n_requests = len(server.log)
    assert run(server, tmp_path, "--files", "105") == 0
    assert len(server.log) == n_requests
    assert "verified" in capsys.readouterr().out


def test_default_set_is_the_10_class_0_hp_set(server, tmp_path):
    for n in CWRU_10CLASS_0HP:
        server.files[f"/files/{n}.mat"] = mat_bytes(n, n=2400)
    assert run(server, tmp_path) == 0
    assert sorted(p.name for p in tmp_path.glob("*.mat")) == sorted(f"{n}.mat" for n in CWRU_10CLASS_0HP)
    df = catalog(tmp_path)
    assert list(df["label"]) == ["Normal", "B_7", "B_14", "B_21", "IR_7", "IR_14", "IR_21", "OR@6_7", "OR@6_14",
                                 "OR@6_21"]
    assert list(df["fs"]) == [48000.0] + [12000.0] * 9 and set(df["load_hp"]) == {0}  # normal baseline: 48 kHz


def test_resume_completes_a_partial_file(server, tmp_path):
    body = mat_bytes(118)
    server.files["/files/118.mat"] = body
    (tmp_path / "118.mat.part").write_bytes(body[:1000])
    assert run(server, tmp_path, "--files", "118") == 0
    assert server.log == [("/files/118.mat", "bytes=1000-")]
    assert (tmp_path / "118.mat").read_bytes() == body and not (tmp_path / "118.mat.part").exists()


def test_interrupted_transfer_resumes_on_retry(server, tmp_path):
    body = mat_bytes(130)
    server.files["/files/130.mat"] = body
    server.cut_next = 3000
    assert run(server, tmp_path, "--files", "130") == 0
    assert [r for _, r in server.log] == [None, "bytes=3000-"]
    assert (tmp_path / "130.mat").read_bytes() == body


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    body = mat_bytes(169)
    server.files["/files/169.mat"] = body
    server.ignore_range = True
    (tmp_path / "169.mat.part").write_bytes(b"stale bytes from elsewhere")
    assert run(server, tmp_path, "--files", "169") == 0
    assert (tmp_path / "169.mat").read_bytes() == body


def test_complete_part_file_is_finished_on_416(server, tmp_path):
    body = mat_bytes(185)
    server.files["/files/185.mat"] = body
    (tmp_path / "185.mat.part").write_bytes(body)
    assert run(server, tmp_path, "--files", "185") == 0
    assert (tmp_path / "185.mat").read_bytes() == body


def test_checksum_mismatch_is_detected(server, tmp_path, capsys):
    body = mat_bytes(197)
    server.files["/files/197.mat"] = body
    assert run(server, tmp_path, "--files", "197") == 0
    data = bytearray((tmp_path / "197.mat").read_bytes())
    data[-1] ^= 0xFF  # the file changes on disk after it was recorded
    (tmp_path / "197.mat").write_bytes(bytes(data))
    capsys.readouterr()
    assert run(server, tmp_path, "--files", "197") == 4
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "197.mat" in err and len(err.strip().splitlines()) == 1
    assert fetch.main(["--dest", str(tmp_path), "--files", "197", "--verify-only"]) == 4
    assert run(server, tmp_path, "--files", "197", "--force") == 0  # re-download repairs it
    assert (tmp_path / "197.mat").read_bytes() == body


def test_download_not_matching_the_manifest_is_rejected(server, tmp_path, capsys):
    server.files["/files/209.mat"] = mat_bytes(209)
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"files": {"209.mat": {"sha256": "0" * 64, "bytes": 1}}}))
    assert run(server, tmp_path, "--files", "209") == 4
    assert "checksum mismatch" in capsys.readouterr().err
    assert not (tmp_path / "209.mat").exists()


def test_html_instead_of_matlab_is_rejected(server, tmp_path, capsys):
    server.files["/files/222.mat"] = b"<!DOCTYPE html><html><body>Page moved</body></html>"
    assert run(server, tmp_path, "--files", "222") == 4
    assert "not a MATLAB file" in capsys.readouterr().err
    assert not list(tmp_path.glob("222*"))


def test_http_404_is_one_line(server, tmp_path, capsys):
    assert run(server, tmp_path, "--files", "234") == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("fetch_cwru: error:") and "HTTP 404" in err and "\n" not in err


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_offline_message_is_one_line_without_traceback(tmp_path):
    url = f"http://127.0.0.1:{_closed_port()}/{{number}}.mat"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--files", "105", "--dest", str(tmp_path), "--base-url",
                           url, "--timeout", "5"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr and len(err.splitlines()) == 1
    assert err.startswith("fetch_cwru: error: cannot reach") and "offline?" in err
    assert not (tmp_path / "105.mat").exists()


def test_list_and_url_template(capsys):
    assert fetch.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "105.mat" in out and "IR_7" in out and len(out.splitlines()) == len(CWRU_FILES)
    assert fetch.file_url("https://engineering.case.edu/sites/default/files/{number}.mat", 105) == \
        "https://engineering.case.edu/sites/default/files/105.mat"
    assert fetch.file_url("http://mirror/cwru/", 97) == "http://mirror/cwru/97.mat"
    assert sorted(fetch.SETS["10class"]()) == sorted(n for n, f in CWRU_FILES.items() if f.label in
                                                     {CWRU_FILES[m].label for m in CWRU_10CLASS_0HP})
    assert len(fetch.SETS["10class"]()) == 40
