"""The README's everyday commands run in the order written, each on what the one before it made (shortened:
a few steps of a small network, a few segments), as a new user would type them."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys

import pytest
from conftest import CWRU_DIR
from helpers import ROOT, TINY_BASE

from vibgan.exchange import read_generated


def everyday_commands() -> list[str]:
    """The command lines of the README's first code block under '## Everyday use', comments stripped."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Everyday use"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def shortened(line: str) -> list[str] | None:
    """argv for one README line, cut to test size; None for lines a subprocess does not need (``source``)."""
    argv = shlex.split(line)
    if argv[0] == "source":
        return None
    assert argv[0] == "python" and argv[1].startswith("pipelines/"), line
    script, args = argv[1], argv[2:]
    cwru = "configs/cwru.toml" in args
    small = [a for s in TINY_BASE for a in ("--set", s)]
    if cwru:
        small += ["--set", f"data.path={str(CWRU_DIR)!r}"]
    if script.endswith("train.py"):
        if "--steps" in args:
            i = args.index("--steps") + 1
            args[i] = str(max(2, int(args[i]) // 400))  # 2000 -> 5, 2400 -> 6: the resume still has steps to do
        else:
            small += ["--steps", "2"]
        small += ["--set", "train.checkpoint_every=1", "--set", "train.eval_every=2", "--set", "train.sample_every=10",
                  "--set", "validate.c2st=false", "--set", "train.calibration_rounds=1"]
    elif script.endswith("generate.py"):
        args[args.index("--n") + 1] = "4"
        small = ["--no-progress"]
    elif script.endswith("validate.py"):
        small = ["--no-c2st", "--no-plots"] + (["--set", f"data.path={str(CWRU_DIR)!r}"] if cwru else [])
    return [sys.executable, str(ROOT / script), *args, *small]


def test_readme_lists_the_everyday_sequence():
    lines = everyday_commands()
    scripts = [shlex.split(x)[1] for x in lines if x.startswith("python")]
    assert scripts == ["pipelines/train.py"] * 2 + ["pipelines/generate.py", "pipelines/validate.py",
                                                     "pipelines/train.py", "pipelines/generate.py",
                                                     "pipelines/validate.py"]
    assert "--resume" in lines[2] and "@candidate" in lines[3]


@pytest.mark.slow
def test_readme_everyday_commands_run_in_order(tmp_path):
    work = tmp_path / "clone"  # stands in for a fresh clone: the scripts and configs, nothing made yet
    work.mkdir()
    for name in ("pipelines", "configs"):
        (work / name).symlink_to(ROOT / name)
    env = {**os.environ, "VIBGAN_HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    has_cwru = CWRU_DIR.is_dir() and any(CWRU_DIR.glob("*.npz"))
    ran = []
    for line in everyday_commands():
        argv = shortened(line)
        if argv is None or ("cwru" in line and not has_cwru):
            continue
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"README line failed: {line}\n{done.stderr[-3000:]}"
        ran.append((line, done))
    assert len(ran) == (7 if has_cwru else 4)
    # the resume continued the first run (5 -> 6 steps) instead of starting again
    assert "resumed from" in ran[1][1].stdout and "trained 6 steps" in ran[1][1].stdout
    fake = read_generated(work / "fake.h5")
    assert sorted(set(fake.labels)) == ["ball", "inner", "normal", "outer"] and len(fake.labels) == 4 * 4
    assert (work / "runs" / "validate" / "report.json").is_file()
    assert "scored 16 segments" in ran[3][1].stdout
    assert (tmp_path / "home" / "mlflow.db").is_file() and not (work / "mlflow.db").exists()
    if has_cwru:
        assert len(set(read_generated(work / "cwru_fake.h5").labels)) == 10
        assert (work / "runs" / "validate-cwru" / "report.json").is_file()
