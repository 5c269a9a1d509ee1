"""Config loading: TOML files, --set overrides, clear errors before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from vibgan.config import apply_overrides, flatten, load_config, to_dict
from vibgan.errors import ConfigError

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.toml")))
def test_shipped_configs_load(name):
    cfg = load_config(CONFIGS / name)
    assert cfg.train.steps > 0


def test_the_fast_cwru_config_is_the_cwru_config_with_the_fast_generator():
    full, fast = load_config(CONFIGS / "cwru.toml"), load_config(CONFIGS / "cwru_fast.toml")
    assert fast.model.hop == full.model.hop == 64 and fast.model.out_upsample == 4
    for part in ("data", "train", "validate"):
        assert getattr(fast, part) == getattr(full, part), part
    changed = {k for k in vars(full.model) if getattr(full.model, k) != getattr(fast.model, k)}
    assert changed == {"widths", "upsample", "out_upsample", "res_blocks", "noise_dim", "jitter_cell_ms"}


@pytest.mark.parametrize("name, fs, taps", [("default.toml", 12000.0, 256), ("machine_b.toml", 16000.0, 341),
                                            ("template.toml", 51200.0, 1091), ("cwru.toml", 12000.0, 256)])
def test_the_impulse_path_length_follows_the_rate(name, fs, taps):
    """model.impulse_ms: one kernel duration (21.3 ms) for any training rate; impulse_taps, where set, wins."""
    from vibgan.networks import ConvGenerator, impulse_taps

    cfg = load_config(CONFIGS / name, [f"data.fs={fs}"])
    assert impulse_taps(cfg.model, fs) == taps
    g = ConvGenerator(2, 1, fs, cfg.model)
    assert g.impulse.kernel.shape[-1] == taps
    with pytest.raises(ConfigError, match=r"model.impulse_ms = 150.0; expected at most 85 ms at data.fs = 48000 Hz"):
        load_config(CONFIGS / name, ["data.fs=48000", "model.impulse_ms=150", "model.impulse_taps=0"])
    with pytest.raises(ConfigError, match=r"model.impulse_trains = 'bpfo'; expected one of 'all', 'fault'"):
        load_config(CONFIGS / name, ["model.impulse_trains='bpfo'"])
    with pytest.raises(ConfigError, match=r"model.impulse_decay_ms = -1.0; expected a number of milliseconds"):
        load_config(CONFIGS / name, ["model.impulse_decay_ms=-1.0"])
    bare = load_config(CONFIGS / name, ["model.impulse_ms=0", "model.impulse_taps=0"])
    assert ConvGenerator(2, 1, fs, bare.model).impulse is None


def test_sinusoid_config_is_the_seed_gan():
    cfg = load_config(CONFIGS / "sinusoid.toml")
    m = cfg.model
    assert (m.kind, m.noise_dim, m.noise, m.hidden, m.out_activation) == ("mlp", 64, "uniform", [256, 64], "tanh")
    assert (m.d_hidden, m.d_dropout, cfg.train.batch_size, cfg.data.n_sinusoids) == ([64], 0.4, 128, 8192)


def test_overrides_are_typed_toml_values():
    cfg = load_config(CONFIGS / "default.toml", ["train.steps=7", "train.lr_g=1e-4", "data.simulate.rpms=[1000, 1200]",
                                                 "train.progress=false", "train.loss=minimax", "out=somewhere"])
    assert cfg.train.steps == 7 and cfg.train.lr_g == pytest.approx(1e-4)
    assert cfg.data.simulate.rpms == [1000.0, 1200.0] and cfg.train.progress is False
    assert cfg.train.loss == "minimax" and cfg.out == "somewhere"


@pytest.mark.parametrize("override, words", [
    ("train.stepz=3", ["stepz", "unknown"]),
    ("train.steps=many", ["train.steps", "integer"]),
    ("train.steps=1.5", ["train.steps", "integer"]),
    ("train.lr_g=true", ["train.lr_g", "number"]),
    ("train.loss=wasserstein", ["train.loss", "hinge"]),
    ("data.source=ftp", ["data.source"]),
    ("data.segment_length=1000", ["segment_length", "multiple"]),
    ("model.widths=[8, 8]", ["model.widths"]),
    ("model.impulse_taps=-4", ["model.impulse_taps", "0-4096"]),
    ("model.out_upsample=0", ["model.out_upsample", "1-16"]),
    ("model.out_upsample=3", ["data.segment_length", "out_upsample", "48"]),
    ("model.jitter_cell_ms=-1", ["model.jitter_cell_ms", "0-10"]),
    ("model.impulse_ms=-2", ["model.impulse_ms", "0-200"]),
    ("train.lr_impulse=0.0", ["train.lr_impulse", "positive"]),
    ("train.precision=fp8", ["train.precision"]),
    ("train.lambdas.beauty=1.0", ["train.lambdas"]),
    ("steps", ["key=value"]),
])
def test_bad_values_name_the_field(override, words):
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "default.toml", [override])
    for w in words:
        assert w in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nsteps = 3", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    typed = tmp_path / "typed.toml"
    typed.write_text("[train]\nsteps = 'x'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=str(typed)):
        load_config(typed)
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ConfigError):
        load_config(binary)


def test_config_is_data_not_code(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.toml"
    evil.write_text(f'out = "__import__(\'os\').system(\'touch {marker}\')"\n', encoding="utf-8")
    cfg = load_config(evil)
    assert cfg.out.startswith("__import__") and not marker.exists()
    cfg = load_config(None, [f"out=__import__('os').system('touch {marker}')"])
    assert not marker.exists()


def test_flatten_and_roundtrip():
    cfg = load_config(CONFIGS / "default.toml")
    flat = flatten(to_dict(cfg))
    assert flat["train.steps"] == cfg.train.steps and flat["data.simulate.seed"] == cfg.data.simulate.seed
    assert apply_overrides({"a": {"b": 1}}, ["a.b=2", "a.c='x'"]) == {"a": {"b": 2, "c": "x"}}


def test_a_dict_override_merges_over_the_defaults():
    """--set train.lambdas.kurtosis=2 on a config without [train.lambdas] changes that weight only: the spectral
    term keeps its default weight (an override once replaced the whole table and turned it off silently)."""
    cfg = load_config(None, ["train.lambdas.kurtosis=2.0"])
    assert cfg.train.lambdas == {"adv": 1.0, "spectral": 1.0, "kurtosis": 2.0, "envelope": 0.0, "spread": 0.0}
    cfg = load_config(CONFIGS / "sinusoid.toml")  # a file's table merges the same way
    assert cfg.train.lambdas["spectral"] == 0.0 and cfg.train.lambdas["spread"] == 0.0


def test_allowed_names_come_from_the_registries():
    from vibgan.champion import CHAMPION_POLICIES
    from vibgan.device import PRECISIONS
    from vibgan.losses import ADVERSARIAL, LAMBDA_NAMES

    for key, names in (("train.loss", ADVERSARIAL), ("train.precision", PRECISIONS),
                       ("tracking.champion_if", CHAMPION_POLICIES)):
        for name in names:
            load_config(None, [f"{key}={name!r}"])  # every registered name is accepted
        with pytest.raises(ConfigError, match=key.replace(".", r"\.") + ".*" + ", ".join(names)):
            load_config(None, [f"{key}='nonsense'"])
    assert set(LAMBDA_NAMES) == {"adv", "spectral", "kurtosis", "envelope", "spread"}
    with pytest.raises(ConfigError, match="train.lambdas.*" + ", ".join(LAMBDA_NAMES)):
        load_config(None, ["train.lambdas.beauty=1.0"])


def test_an_error_names_the_set_override_it_came_from_not_the_file(tmp_path):
    for item, field in (("train.stepz=3", "train"), ("train.steps=-3", "train.steps"), ("train.steps='x'", "train.steps"),
                        ("train.lambdas.beauty=1.0", "train.lambdas")):
        with pytest.raises(ConfigError) as e:
            load_config(CONFIGS / "default.toml", ["train.batch_size=8", item])
        assert str(e.value).startswith(f"--set {item}: {field}"), str(e.value)
    p = tmp_path / "c.toml"
    p.write_text("[train]\nsteps = -1\n")  # a bad value from the file is blamed on the file
    with pytest.raises(ConfigError, match=r"^config .*c\.toml: train\.steps = -1"):
        load_config(p, ["train.batch_size=8"])


@pytest.mark.parametrize("value, expected", [("-1.0", " in 0-4"), ("5.0", " in 0-4"), ("true", ", got bool"),
                                             ("'1'", ", got str")])
def test_impulse_speed_exp_out_of_range_is_a_config_error(value, expected):
    with pytest.raises(ConfigError, match=rf"model.impulse_speed_exp.*expected a number{expected}"):
        load_config(None, [f"model.impulse_speed_exp={value}"])
