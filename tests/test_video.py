"""``python -m trpojax.evaluate DIR --video FILE.gif``: one GIF frame per step of the first evaluation episode,
whose return is the evaluation's; the classic-control frame drawers; bad input exits 2 before any work."""

import re

import jax
import numpy as np
import pytest
from PIL import Image

from trpojax import evaluate, train
from trpojax.envs import make_env, render

TINY = """\
algo: reinforce
env: CartPole-v1
seed: 0
num_seeds: 2
total_env_steps: 2048
num_envs: 4
num_steps: 64
eval_episodes: 2
network:
  policy_hidden: [16]
  value_hidden: [16]
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny finished TRPO CartPole run (2 seeds, 2 evaluation episodes each)."""
    root = tmp_path_factory.mktemp("video")
    (root / "tiny.yaml").write_text(TINY)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRPOJAX_CACHE_DIR", str(root / "jax_cache"))
        assert train.main(["--config", str(root / "tiny.yaml"), "--out", str(root / "run"), "--quiet"]) == 0
    return root / "run"


def test_gif_has_one_frame_per_step_of_the_first_evaluation_episode(run_dir, tmp_path, capsys):
    gif = tmp_path / "seed1.gif"
    assert evaluate.main([str(run_dir), "--video", str(gif), "--seed", "1"]) == 0
    line = capsys.readouterr().out
    episode_return, steps = re.search(r"episode return ([\d.]+) in (\d+) steps", line).groups()
    # The oracle: the evaluation's own first episode of seed 1 (same keys, same compiled arithmetic).
    results, _ = evaluate.evaluate_run(run_dir)
    assert float(episode_return) == results["per_seed"][1]["returns"][0]
    assert int(steps) == float(episode_return)  # CartPole pays 1 per step
    with Image.open(gif) as image:
        assert image.n_frames == int(steps)
        assert image.size == evaluate.VIDEO_SIZE
        assert image.info["duration"] == 20  # CartPole's tau = 0.02 s: real time at 50 fps


@pytest.mark.parametrize(
    "args, message",
    [
        (["--video", "{tmp}/x.mp4"], "videos are written as .gif"),
        (["--video", "{tmp}/x.gif", "--seed", "2"], "--seed: must be in [0, 2)"),
        (["--seed", "1"], "--seed applies to --video only"),
        (["--video", "{tmp}/nodir/x.gif"], "does not exist"),
    ],
)
def test_bad_video_input_exits_2_with_one_line(run_dir, tmp_path, capsys, args, message):
    args = [a.format(tmp=tmp_path) for a in args]
    assert evaluate.main([str(run_dir), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_a_directory_that_is_not_a_run_exits_2(tmp_path, capsys):
    assert evaluate.main([str(tmp_path / "missing"), "--video", str(tmp_path / "x.gif")]) == 2
    assert "is not a run directory" in capsys.readouterr().err


def test_environments_without_a_renderer_are_refused_by_name():
    with pytest.raises(render.NoRenderer, match="no renderer for LQR-v0"):
        render.check_renderable("LQR-v0")
    render.check_renderable("gymnax:Pendulum-v1")


@pytest.mark.parametrize("name, field", [
    ("CartPole-v1", "theta"), ("Acrobot-v1", "joint_angle2"), ("Pendulum-v1", "theta"),
    ("MountainCar-v0", "position"), ("MountainCarContinuous-v0", "position"),
])
def test_classic_control_frames_follow_the_state(name, field):
    spec = make_env(name)
    _, state = spec.reset(jax.random.PRNGKey(0))
    moved = state.replace(**{field: getattr(state, field) + 0.5})
    states = jax.tree.map(lambda a, b: np.stack([a, b]), state, moved)
    frames = render.draw_frames(spec, states, 2, (80, 60))
    assert [f.shape for f in frames] == [(60, 80, 3)] * 2 and all(f.dtype == np.uint8 for f in frames)
    body = (slice(15, None), slice(None))  # below the step label
    assert not np.array_equal(frames[0][body], frames[1][body])
