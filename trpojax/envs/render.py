"""Recording one evaluation episode and drawing its frames headless.

:func:`record_episode` replays episode ``index`` of :func:`trpojax.envs.rollout.evaluate_policy`'s batch with
the same keys (the same splits of the evaluation key), keeping that episode's environment state at every
step, so its return is the evaluation's return of that episode. :func:`draw_frames` turns those states into
RGB frames: the gymnax classic-control environments are drawn from their ``EnvState`` with Pillow (cart
position and pole angle; the acrobot's link angles; the pendulum's angle; the car's position on the hill);
the physics families (MuJoCo Playground, Brax) use their own MuJoCo renderer, which needs a headless OpenGL
(``MUJOCO_GL=egl`` or ``osmesa``). One frame per step: the state the step's action was taken in (gymnax and
the physics adapters reset at an episode's end, so the terminal state itself is not kept), labelled with its
step number (which also keeps GIF writers from merging frames that look alike).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np
from PIL import Image, ImageDraw

from trpojax.envs.base import EnvSpec
from trpojax.envs.rollout import PolicyFn, scan_episodes

Size = tuple[int, int]  # (width, height) in pixels
SKY, INK, ACCENT, POLE = (255, 255, 255), (40, 40, 40), (204, 77, 51), (202, 152, 101)


class NoRenderer(ValueError):
    """The environment has no headless renderer here (its family draws nothing, or OpenGL is missing)."""


class Recording(NamedTuple):
    """One episode, time-major over the evaluation horizon H.

    Attributes:
        states: the environment state pytree, leaves ``[H, ...]``: the state each step's action was taken in.
        reward: [H] r_t while the episode runs, 0 after its end.
        mask: [H] 1.0 for the episode's steps (up to and including its end), 0.0 after.
    """

    states: Any
    reward: jax.Array
    mask: jax.Array


def record_episode(
    spec: EnvSpec,
    policy_fn: PolicyFn,
    params: Any,
    key: jax.Array,
    num_episodes: int,
    normalize: Callable[[jax.Array], jax.Array] = lambda obs: obs,
    deterministic: bool = True,
    index: int = 0,
) -> Recording:
    """Episode ``index`` of the ``num_episodes`` that ``evaluate_policy(spec, ..., key, num_episodes)`` runs.

    The batch is stepped by :func:`trpojax.envs.rollout.scan_episodes`, as the evaluation's is (horizon
    ``spec.max_episode_steps``); only episode ``index``'s states are kept. Pure and jittable (``num_episodes``
    and ``index`` static).

    Returns:
        The :class:`Recording`; ``sum(reward)`` is that episode's evaluation return, ``sum(mask)`` its length.
    """

    def keep(env_state: Any, obs: jax.Array, action: jax.Array, reward: jax.Array, mask: jax.Array) -> tuple:
        return jax.tree.map(lambda x: x[index], env_state), mask[index] * reward[index], mask[index]

    states, reward, mask = scan_episodes(
        spec, policy_fn, params, key, num_episodes, spec.max_episode_steps, keep, normalize, deterministic
    )
    return Recording(states, reward, mask)


def _canvas(size: Size) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    image = Image.new("RGB", size, SKY)
    return image, ImageDraw.Draw(image)


def draw_cartpole(state: Any, params: Any, size: Size) -> np.ndarray:
    """CartPole: the cart at ``state.x`` on a track of +-``x_threshold`` and the pole at angle ``state.theta``
    from upright (clockwise positive, as gymnax integrates it), drawn 2 * ``length`` long."""
    width, height = size
    image, draw = _canvas(size)
    scale = width / (2.4 * params.x_threshold)
    ground = 0.7 * height
    cart_x = width / 2 + float(state.x) * scale
    cart_w, cart_h = 0.1 * width, 0.06 * width
    draw.line([(0, ground), (width, ground)], fill=INK)
    draw.rectangle([cart_x - cart_w / 2, ground - cart_h, cart_x + cart_w / 2, ground], fill=INK)
    pivot = (cart_x, ground - cart_h)
    pole = 2 * params.length * scale
    theta = float(state.theta)
    tip = (pivot[0] + pole * math.sin(theta), pivot[1] - pole * math.cos(theta))
    draw.line([pivot, tip], fill=POLE, width=max(2, width // 40))
    return np.asarray(image)


def draw_acrobot(state: Any, params: Any, size: Size) -> np.ndarray:
    """Acrobot: two links hanging from the pivot at link angles ``joint_angle1`` (from straight down) and
    ``joint_angle2`` (relative to the first link); the line above the pivot is the height to swing over."""
    width, height = size
    image, draw = _canvas(size)
    reach = params.link_length_1 + params.link_length_2
    scale = 0.45 * min(width, height) / reach
    pivot = (width / 2, height / 2)
    a1, a2 = float(state.joint_angle1), float(state.joint_angle2)
    elbow = (pivot[0] + params.link_length_1 * scale * math.sin(a1),
             pivot[1] + params.link_length_1 * scale * math.cos(a1))
    hand = (elbow[0] + params.link_length_2 * scale * math.sin(a1 + a2),
            elbow[1] + params.link_length_2 * scale * math.cos(a1 + a2))
    goal = pivot[1] - params.link_length_1 * scale
    draw.line([(0, goal), (width, goal)], fill=INK)
    line = max(2, width // 40)
    draw.line([pivot, elbow], fill=ACCENT, width=line)
    draw.line([elbow, hand], fill=ACCENT, width=line)
    for x, y in (pivot, elbow):
        draw.ellipse([x - line, y - line, x + line, y + line], fill=INK)
    return np.asarray(image)


def draw_pendulum(state: Any, params: Any, size: Size) -> np.ndarray:
    """Pendulum: the rod at angle ``state.theta`` from upright (counter-clockwise positive)."""
    del params
    width, height = size
    image, draw = _canvas(size)
    pivot = (width / 2, height / 2)
    rod = 0.4 * min(width, height)
    theta = float(state.theta)
    tip = (pivot[0] - rod * math.sin(theta), pivot[1] - rod * math.cos(theta))
    draw.line([pivot, tip], fill=ACCENT, width=max(3, width // 25))
    r = max(2, width // 50)
    draw.ellipse([pivot[0] - r, pivot[1] - r, pivot[0] + r, pivot[1] + r], fill=INK)
    return np.asarray(image)


def draw_mountain_car(state: Any, params: Any, size: Size) -> np.ndarray:
    """MountainCar (discrete or continuous): the car at ``state.position`` on the hill
    ``y = 0.45 sin(3x) + 0.55`` between ``min_position`` and ``max_position``, the flag at ``goal_position``."""
    width, height = size
    image, draw = _canvas(size)
    low, high = params.min_position, params.max_position
    scale_x, scale_y = width / (high - low), 0.8 * height

    def point(x: float) -> tuple[float, float]:
        return (x - low) * scale_x, height - 0.05 * height - (0.45 * math.sin(3 * x) + 0.55) * scale_y

    xs = np.linspace(low, high, 60)
    draw.line([point(float(x)) for x in xs], fill=INK, width=2)
    flag = point(params.goal_position)
    draw.line([flag, (flag[0], flag[1] - 0.12 * height)], fill=INK, width=2)
    draw.polygon([(flag[0], flag[1] - 0.12 * height), (flag[0] + 0.06 * width, flag[1] - 0.1 * height),
                  (flag[0], flag[1] - 0.08 * height)], fill=ACCENT)
    car = point(float(state.position))
    r = max(3, width // 25)
    draw.ellipse([car[0] - r, car[1] - 2 * r, car[0] + r, car[1]], fill=ACCENT)
    return np.asarray(image)


# gymnax id -> (frame drawer of (state, params, size), real-time frames per second)
CLASSIC_CONTROL = {
    "CartPole-v1": (draw_cartpole, 50.0),  # tau = 0.02 s
    "Acrobot-v1": (draw_acrobot, 5.0),  # dt = 0.2 s
    "Pendulum-v1": (draw_pendulum, 20.0),  # dt = 0.05 s
    "MountainCar-v0": (draw_mountain_car, 30.0),  # no time step; Gym's render_fps
    "MountainCarContinuous-v0": (draw_mountain_car, 30.0),
}
PHYSICS_PREFIXES = ("playground:", "brax:")
GL_HINT = "MuJoCo needs EGL or OSMesa (set MUJOCO_GL=egl or MUJOCO_GL=osmesa)"


def check_renderable(name: str) -> None:
    """Raise :class:`NoRenderer` (one line naming ``name``) unless frames of environment ``name`` can be drawn.

    Decided from the id alone (nothing is built or compiled): a gymnax classic-control id, or a physics
    family's id when MuJoCo can open a headless OpenGL context here.
    """
    plain = name.removeprefix("gymnax:")
    if plain in CLASSIC_CONTROL:
        return
    if not name.startswith(PHYSICS_PREFIXES):
        raise NoRenderer(f"no renderer for {name}: videos are drawn for {', '.join(CLASSIC_CONTROL)} and the "
                         "playground: and brax: families")
    try:
        import mujoco

        with warnings.catch_warnings():  # GLFW warns (no DISPLAY) before MuJoCo raises
            warnings.simplefilter("ignore")
            mujoco.Renderer(mujoco.MjModel.from_xml_string("<mujoco/>"), 16, 16).close()
    except Exception as err:  # noqa: BLE001 - mujoco raises many kinds (ImportError, AttributeError, mujoco.FatalError)
        raise NoRenderer(f"no headless renderer for {name}: {GL_HINT} ({type(err).__name__}: {err})") from None


def frames_per_second(spec: EnvSpec, action_repeat: int = 0) -> float:
    """Real-time frame rate of ``spec``'s agent steps: the classic-control table's, or for a physics
    environment ``1 / (env.dt * repeat)`` with ``action_repeat`` (0: the environment config's own, else 1)."""
    plain = spec.name.removeprefix("gymnax:")
    if plain in CLASSIC_CONTROL:
        return CLASSIC_CONTROL[plain][1]
    params = spec.params if spec.params is not None else {}
    repeat = action_repeat or int(params.get("action_repeat", 1) or 1)
    return 1.0 / (float(spec.env.dt) * repeat)


def label(frame: np.ndarray, text: str) -> np.ndarray:
    """``frame`` (RGB ``uint8 [height, width, 3]``) with ``text`` written in its top-left corner, dark on a
    light corner and light on a dark one."""
    frame = np.ascontiguousarray(frame[..., :3])
    image = Image.fromarray(frame)
    ImageDraw.Draw(image).text((3, 2), text, fill=INK if frame[:12, :40].mean() > 127 else SKY)
    return np.asarray(image)


def draw_frames(spec: EnvSpec, states: Any, num_frames: int, size: Size = (200, 150)) -> list[np.ndarray]:
    """RGB frames ``uint8 [height, width, 3]`` of the first ``num_frames`` states (leaves ``[H, ...]``), each
    labelled ``t/num_frames`` (t from 1).

    Raises:
        NoRenderer: see :func:`check_renderable`.
    """
    check_renderable(spec.name)
    states = jax.tree.map(lambda x: np.asarray(x[:num_frames]), states)
    per_step = [jax.tree.map(lambda x, t=t: x[t], states) for t in range(num_frames)]
    plain = spec.name.removeprefix("gymnax:")
    if plain in CLASSIC_CONTROL:
        draw = CLASSIC_CONTROL[plain][0]
        frames = [draw(state, spec.params, size) for state in per_step]
    else:
        inner = [state.inner for state in per_step]  # trpojax.envs.physics.PhysicsState
        trajectory = inner if spec.name.startswith("playground:") else [state.pipeline_state for state in inner]
        frames = list(spec.env.render(trajectory, height=size[1], width=size[0]))
    return [label(frame, f"{t + 1}/{num_frames}") for t, frame in enumerate(frames)]
