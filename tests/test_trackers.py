"""Experiment trackers and the progress_fn hook: what TensorBoard and wandb (offline) wrote, read back with
their own readers and compared with metrics.csv and summary.json; a raising hook; trackers that cannot start."""

import contextlib
import io
import json
import struct
from pathlib import Path

import jax
import numpy as np
import pytest
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from trpojax import config as config_lib
from trpojax import train
from trpojax.fastcpu.cache import ExecutableCache
from trpojax.train import outputs, trackers

ROOT = Path(__file__).parent.parent
TINY = {
    "total_env_steps": 1024, "num_envs": 4, "num_steps": 32, "num_seeds": 2, "eval_episodes": 2, "num_chunks": 4,
    "network": {"policy_hidden": [16], "value_hidden": [16]}, "trpo": {"critic_epochs": 1},
    "compilation_cache": False,
}
WANDB_ENV = {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONSOLE": "off"}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One tiny TRPO run with loggers [csv, tensorboard, wandb] and a progress_fn that raises at its second call."""
    out = tmp_path_factory.mktemp("trackers") / "run"
    config = config_lib.from_dict({**TINY, "loggers": ["csv", "tensorboard", "wandb"]})
    calls = []

    def progress_fn(update, env_steps, metrics):
        calls.append((update, env_steps, {name: np.array(values) for name, values in metrics.items()}))
        if len(calls) == 2:
            raise RuntimeError("hook broke")

    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(stderr):
        for key, value in WANDB_ENV.items():
            mp.setenv(key, value)
        result = train.run(config, out, progress=False, progress_fn=progress_fn)
    return result, calls, stderr.getvalue()


def mean_per_update(out: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """metrics.csv's env steps and each metric's mean over seeds, per update."""
    data = outputs.read_metrics(out / "metrics.csv")
    steps = np.unique(data["env_steps"])
    means = {name: np.array([data[name][data["env_steps"] == s].mean() for s in steps])
             for name in data if name not in ("update", "env_steps", "seed")}
    return steps, means


def test_progress_fn_gets_each_chunk_and_a_raising_one_is_dropped_with_one_warning(run):
    result, calls, stderr = run
    config = config_lib.from_dict(TINY)
    steps, means = mean_per_update(result.out_dir)
    assert len(steps) == config.num_updates  # metrics.csv complete although the hook raised
    assert len(calls) == 2  # not called after it raised
    update, env_steps, metrics = calls[0]
    assert env_steps == update * config.steps_per_update
    header = (result.out_dir / "metrics.csv").read_text().splitlines()[0].split(",")
    assert sorted(metrics) == sorted(header[3:])
    assert all(values.shape == (2, update) for values in metrics.values())
    np.testing.assert_allclose(metrics["kl"].mean(axis=0), means["kl"][:update], rtol=1e-5)
    assert calls[1][0] == 2 * update
    warnings = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "progress_fn failed at update" in warnings[0] and "hook broke" in warnings[0]


def test_tensorboard_events_match_metrics_csv_and_summary(run):
    result, _, _ = run
    acc = event_accumulator.EventAccumulator(str(result.out_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    steps, means = mean_per_update(result.out_dir)
    for name, mean in means.items():
        events = acc.Scalars(f"train/{name}")
        assert [e.step for e in events] == steps.tolist()
        np.testing.assert_allclose([e.value for e in events], mean, rtol=1e-5, atol=1e-6, err_msg=name)
    data = outputs.read_metrics(result.out_dir / "metrics.csv")
    seed1 = acc.Scalars("seed_1/episode_return_mean")
    np.testing.assert_allclose([e.value for e in seed1], data["episode_return_mean"][data["seed"] == 1], rtol=1e-5)
    summary = json.loads((result.out_dir / "summary.json").read_text())
    (final,) = acc.Scalars("eval/return_mean")
    assert final.step == summary["env_steps"]
    assert final.value == pytest.approx(summary["eval_return_mean"], rel=1e-6)
    for i, value in enumerate(summary["eval_return_per_seed"]):
        assert acc.Scalars(f"seed_{i}/eval_return")[0].value == pytest.approx(value, rel=1e-6)
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["num_envs"].number_value == 4 and hparams["trpo.critic_epochs"].number_value == 1
    assert hparams["env"].string_value == "CartPole-v1"


def wandb_records(path: Path):
    """The records of a .wandb file: wandb's LevelDB-style log (a 7-byte ``:W&B`` header, 32 KiB blocks of
    chunks each with a 7-byte header: crc32, length, type 1 full / 2 first / 3 middle / 4 last) of
    ``wandb.proto`` ``Record`` messages."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # a block's zero-filled tail
            pos += left
            continue
        pending += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(pending)
            pending = b""


def read_wandb(run_dir: Path) -> tuple[str, dict, dict[int, dict], dict]:
    """``(run id, config, history by step, summary)`` of the offline runs in ``run_dir/wandb``, in order."""
    config, history, summary, run_id = {}, {}, {}, None
    for path in sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb")):
        for record in wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                run_id = record.run.run_id
                config.update({item.key: json.loads(item.value_json) for item in record.run.config.update})
            elif kind == "history":
                row = {item.key or "/".join(item.nested_key): json.loads(item.value_json)
                       for item in record.history.item}
                history[row["_step"]] = row
            elif kind == "summary":
                summary.update({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                                for item in record.summary.update})
    return run_id, config, history, summary


def test_wandb_offline_run_matches_metrics_csv_and_summary(run):
    result, _, _ = run
    run_id, config, history, summary = read_wandb(result.out_dir)
    assert run_id == (result.out_dir / "wandb" / "run_id").read_text().strip()
    assert config["num_envs"] == 4 and config["trpo"]["critic_epochs"] == 1 and config["loggers"][1] == "tensorboard"
    steps, means = mean_per_update(result.out_dir)
    assert sorted(history) == steps.tolist()
    for name, mean in means.items():
        logged = [history[s][f"train/{name}"] for s in steps.tolist()]
        np.testing.assert_allclose(logged, mean, rtol=1e-5, atol=1e-6, err_msg=name)
    expected = json.loads((result.out_dir / "summary.json").read_text())
    assert summary["eval/return_mean"] == pytest.approx(expected["eval_return_mean"])
    assert summary["seed_1/eval_return"] == pytest.approx(expected["eval_return_per_seed"][1])


def test_a_resumed_run_continues_the_same_tracker_runs(tmp_path, monkeypatch):
    """A segment killed after logging past its checkpoint (update 2 of 4), then resumed from it: TensorBoard
    keeps the resumed segment's values for the steps logged twice, wandb continues the same run id."""
    for key, value in WANDB_ENV.items():
        monkeypatch.setenv(key, value)
    config = config_lib.from_dict({**TINY, "loggers": ["tensorboard", "wandb"]})
    spu = config.steps_per_update
    chunk = {"kl": np.arange(8.0).reshape(2, 4)}
    first = trackers.start(config, tmp_path)
    first(4, 4 * spu, chunk)
    first.close(False)
    with trackers.start(config, tmp_path, resume_update=2) as second:
        second(4, 4 * spu, {"kl": -chunk["kl"][:, 2:]})
    acc = event_accumulator.EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    kept = [(e.step, e.value) for e in acc.Scalars("train/kl")]
    assert kept == [(spu, 2), (2 * spu, 3), (3 * spu, -4), (4 * spu, -5)]  # means over the two seeds
    segments = sorted(tmp_path.glob("wandb/offline-run-*/run-*.wandb"))
    ids = [record.run.run_id for path in segments for record in wandb_records(path) if record.HasField("run")]
    assert len(segments) == 2 and ids == [(tmp_path / "wandb" / "run_id").read_text().strip()] * 2


def test_loggers_change_neither_the_program_nor_its_cache_key():
    plain = config_lib.from_dict(TINY)
    tracked = config_lib.from_dict({**TINY, "loggers": ["csv", "tensorboard", "wandb"]})
    assert jax.tree.structure(plain) == jax.tree.structure(tracked)
    cache = ExecutableCache("unused")
    assert cache.key(plain, "chunk-2", None) == cache.key(tracked, "chunk-2", None)


def test_an_unknown_logger_exits_2_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = ["--config", str(ROOT / "configs/trpo_cartpole.yaml"), "--set", "loggers=[csv,tensorbord]", "--out", "run"]
    assert train.main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "loggers[1]: must be one of csv, tensorboard, wandb, got 'tensorbord'" in line
    assert list(tmp_path.iterdir()) == []


def test_a_tracker_that_cannot_start_exits_2_before_training(tmp_path, monkeypatch, capsys):
    """wandb online without an API key (and no network): refused at wandb.init, before anything compiles."""
    monkeypatch.chdir(tmp_path)
    for key in ("WANDB_API_KEY", "WANDB_CONSOLE"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"WANDB_MODE": "online", "WANDB_SILENT": "true", "HOME": str(tmp_path / "home"),
                       "WANDB_CONFIG_DIR": str(tmp_path / "home"), "NETRC": str(tmp_path / "home" / "netrc")}.items():
        monkeypatch.setenv(key, value)
    args = ["--config", str(ROOT / "configs/trpo_cartpole.yaml"), "--set", "loggers=[tensorboard,wandb]",
            "--set", "total_env_steps=1024", "--out", "run", "--quiet"]  # a tiny budget in case it trained
    assert train.main(args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: loggers: wandb cannot start:") and "API key" in line
    assert not (tmp_path / "run").exists()  # the tensorboard folder started before it is removed again
