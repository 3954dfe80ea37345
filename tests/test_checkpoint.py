"""Checkpoint files: round trip, atomic layout, corruption detection, fallback, pruning, metric truncation."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from trpojax import config as config_lib
from trpojax.train import checkpoint
from trpojax.trainer import chunk_schedule, remaining_lengths


class Toy(NamedTuple):
    params: dict
    key: jax.Array
    done: jax.Array
    update: jax.Array


class Params(NamedTuple):
    params: dict


def toy_state(scale=1.0, width=3):
    return Toy(
        params={"w": scale * jnp.arange(2 * width, dtype=jnp.float32).reshape(2, width), "b": jnp.ones((2,))},
        key=jax.vmap(jax.random.PRNGKey)(jnp.arange(2)),
        done=jnp.array([True, False]),
        update=jnp.array([7, 7], jnp.int32),
    )


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(x, y)


def test_round_trip_and_layout(tmp_path):
    state = toy_state()
    path = checkpoint.save(tmp_path, state, "seed: 0\n", update=7, keep=3, train_s=1.5)
    assert path == tmp_path / "checkpoints" / "7"
    assert sorted(p.name for p in path.iterdir()) == ["config.yaml", "manifest.json", "state.npz"]
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["7"]  # no temporary directory left
    manifest = checkpoint.verify(path)
    assert manifest["update"] == 7 and manifest["train_s"] == 1.5
    restored = checkpoint.load_state(path, jax.eval_shape(lambda: state))
    assert_trees_equal(restored, state)


def test_keeps_only_the_newest(tmp_path):
    for update in (2, 4, 6, 8):
        checkpoint.save(tmp_path, toy_state(update), "", update=update, keep=2)
    assert checkpoint.saved_updates(tmp_path) == [6, 8]
    path, manifest, skipped = checkpoint.latest(tmp_path)
    assert (path.name, manifest["update"], skipped) == ("8", 8, [])


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncate", "truncated"),
        ("flip", "checksum"),
        ("no_manifest", "incomplete write"),
        ("bad_manifest", "unreadable manifest.json"),
        ("no_state", "state.npz is missing"),
    ],
)
def test_damaged_checkpoint_is_detected_and_skipped(tmp_path, damage, reason):
    checkpoint.save(tmp_path, toy_state(1.0), "", update=2, keep=3)
    newest = checkpoint.save(tmp_path, toy_state(2.0), "", update=4, keep=3)
    state_file = newest / "state.npz"
    data = state_file.read_bytes()
    if damage == "truncate":
        state_file.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        state_file.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "no_manifest":
        (newest / "manifest.json").unlink()
    elif damage == "bad_manifest":
        (newest / "manifest.json").write_text("{")
    else:
        state_file.unlink()
    with pytest.raises(checkpoint.CheckpointError, match=reason):
        checkpoint.verify(newest)
    path, _, skipped = checkpoint.latest(tmp_path)
    assert path.name == "2"
    assert len(skipped) == 1 and reason in skipped[0]
    assert_trees_equal(checkpoint.load_state(path, jax.eval_shape(toy_state)), toy_state(1.0))


def test_no_complete_checkpoint(tmp_path):
    with pytest.raises(checkpoint.CheckpointError, match="holds no checkpoint"):
        checkpoint.latest(tmp_path)
    path = checkpoint.save(tmp_path, toy_state(), "", update=3, keep=3)
    (path / "state.npz").write_bytes(b"")
    with pytest.raises(checkpoint.CheckpointError, match="no complete checkpoint.*truncated"):
        checkpoint.latest(tmp_path)


def test_state_of_another_shape_is_rejected(tmp_path):
    path = checkpoint.save(tmp_path, toy_state(width=3), "", update=1, keep=3)
    shapes = r"\['w'\] is float32\[2, 3\] there, float32\[2, 4\] here"
    with pytest.raises(checkpoint.CheckpointMismatch, match=shapes):
        checkpoint.load_state(path, jax.eval_shape(lambda: toy_state(width=4)))
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"it has no \['params'\]"):
        checkpoint.load_state(path, jax.eval_shape(lambda: {"params": toy_state().params}))
    with pytest.raises(checkpoint.CheckpointMismatch, match="it has an unexpected .done"):
        checkpoint.load_state(path, jax.eval_shape(lambda: Params(toy_state().params)))


def test_config_mismatch_names_the_key(tmp_path):
    path = checkpoint.save(tmp_path, toy_state(), "network:\n  policy_hidden: [16]\n", update=1, keep=3)
    checkpoint.check_config(path, "network:\n  policy_hidden: [16]\n")
    with pytest.raises(checkpoint.CheckpointMismatch, match=r"network.policy_hidden is \[16\] there, \[32\]"):
        checkpoint.check_config(path, "network:\n  policy_hidden: [32]\n")


def test_replacing_and_discarding(tmp_path):
    checkpoint.save(tmp_path, toy_state(1.0), "", update=4, keep=3)
    path = checkpoint.save(tmp_path, toy_state(5.0), "", update=4, keep=3)
    assert_trees_equal(checkpoint.load_state(path, jax.eval_shape(toy_state)), toy_state(5.0))
    checkpoint.save(tmp_path, toy_state(), "", update=6, keep=3)
    (tmp_path / "checkpoints" / ".tmp-8-crashed").mkdir()
    assert checkpoint.saved_updates(tmp_path) == [4, 6]
    checkpoint.discard_after(tmp_path, 4)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["4"]


def test_truncate_metrics_drops_replayed_and_partial_rows(tmp_path):
    path = tmp_path / "metrics.csv"
    rows = [f"{u},{u * 10},{s},{u + s}.5\r\n" for u in (1, 2, 3) for s in (0, 1)]
    path.write_bytes(("update,env_steps,seed,x\r\n" + "".join(rows) + "4,40,0,4.").encode())
    checkpoint.truncate_metrics(path, 2)
    assert path.read_bytes() == ("update,env_steps,seed,x\r\n" + "".join(rows[:4])).encode()


@pytest.mark.parametrize("num_updates, num_chunks, every", [(48, 24, 4), (50, 7, 6), (10, 3, 0), (9, 20, 4)])
def test_chunk_schedule_puts_checkpoints_on_boundaries(num_updates, num_chunks, every):
    config = config_lib.default(
        "trpo", total_env_steps=num_updates * 1024, num_chunks=num_chunks, checkpoint_every=every
    )
    lengths = chunk_schedule(config)
    boundaries = set(np.cumsum(lengths).tolist())
    assert sum(lengths) == num_updates and min(lengths) >= 1
    assert set(range(every, num_updates, every) if every else []) <= boundaries
    for done in sorted(boundaries | {0, 5}):
        rest = remaining_lengths(lengths, done)
        assert sum(rest) == num_updates - done
        assert set((done + np.cumsum(rest)).tolist()) <= boundaries


def test_atomic_writes_get_the_permissions_of_a_plain_open(tmp_path):
    from trpojax.train import outputs

    outputs.write_text_atomic(tmp_path / "a.txt", "x")
    with open(tmp_path / "b.txt", "w") as f:
        f.write("x")
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
