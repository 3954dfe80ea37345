"""Cost of the Hessian-aided estimators: one B(tau, theta) v against one g(tau, theta), and one N-HARPG
iteration against one REINFORCE iteration, on the same CartPole-v1 trajectories, side by side.

Targets: B v <= 3x g; one N-HARPG update <= 4x one REINFORCE update on the same batch. The batch is n
trajectories of horizon H sampled from reset (:func:`trpojax.envs.episodic_rollout`) with the initial
(random) policy; masked steps are computed like all others, so the cost does not
depend on episode lengths. N-HARPG's update computes g on the batch and B v on a second batch of the same
size (here the same trajectories); REINFORCE's computes g and one Adam step. Whole learner steps (sampling
included: N-HARPG samples two batches) are timed too, for context.

    python -m benchmarks.pg_cost [--trajectories 8] [--horizon 500] [--hidden 64 64]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks._timing import best_of, machine
from trpojax import config as config_lib
from trpojax.algos import Networks, harpg, reinforce
from trpojax.algos.episodic import make_log_prob_fn, mean_hessian_vector_product, mean_policy_gradient
from trpojax.envs import make_env
from trpojax.envs.rollout import episodic_rollout
from trpojax.networks import PolicyNetwork
from trpojax.trainer import make_learner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trajectories", type=int, default=8, help="n trajectories per batch")
    parser.add_argument("--horizon", type=int, default=500, help="H steps per trajectory")
    parser.add_argument("--hidden", type=int, nargs="+", default=[64, 64], help="policy MLP widths")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    spec = make_env("CartPole-v1")
    policy = PolicyNetwork(spec.action_dim, spec.discrete, tuple(args.hidden), "tanh")
    log_prob_fn = make_log_prob_fn(policy.apply)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
    params = policy.init(k1, jnp.zeros((spec.obs_dim,)))
    batch = jax.jit(episodic_rollout, static_argnums=(0, 1, 4, 5))(
        spec, policy.apply, params, k2, args.trajectories, args.horizon
    )
    v = jax.tree.map(lambda x: 1e-2 * jax.random.normal(k3, x.shape), params)
    discount = 0.99

    grad = jax.jit(lambda p, b: mean_policy_gradient(log_prob_fn, p, b, discount))
    hvp = jax.jit(lambda p, b, v: mean_hessian_vector_product(log_prob_fn, p, b, discount, v))
    t_g = best_of(lambda: grad(params, batch), args.repeats)
    t_bv = best_of(lambda: hvp(params, batch, v), args.repeats)

    r_config = reinforce.Config(optimizer="adam")
    r_state = reinforce.init(params, None, r_config)
    nets, key = Networks(policy.apply), jax.random.PRNGKey(1)
    r_update = jax.jit(lambda s, b: reinforce.update(s, reinforce.Batch(b, discount), key, r_config, nets=nets))
    h_config = harpg.Config(normalized=True)
    h_state = harpg.init(params, None, h_config)._replace(
        prev_params=jax.tree.map(jnp.subtract, params, v), step=jnp.asarray(3)
    )
    h_update = jax.jit(
        lambda s, b, q: harpg.update(s, harpg.Batch(b, b, q, discount), key, h_config, nets=nets)
    )
    t_r = best_of(lambda: r_update(r_state, batch), args.repeats)
    t_h = best_of(lambda: h_update(h_state, batch, jnp.asarray(0.5)), args.repeats)

    steps = {}
    for name, sets in (("reinforce", []), ("nharpg", ["algo=harpg", "harpg.normalized=true"])):
        cfg = config_lib.from_dict({"algo": "reinforce", "env": "CartPole-v1"}, [
            *sets, f"num_envs={args.trajectories}", f"num_steps={args.horizon}",
            f"harpg.hvp_trajectories={args.trajectories}" if sets else "reinforce.optimizer=adam",
            f"network.policy_hidden={list(args.hidden)}",
        ])
        _, learner = make_learner(cfg)
        state = jax.jit(learner.init)(jax.random.PRNGKey(1), cfg)
        step = jax.jit(learner.step)
        steps[name] = best_of(lambda step=step, state=state, cfg=cfg: step(state, cfg), args.repeats)

    print(f"machine: {machine()}")
    print(f"CartPole-v1, n = {args.trajectories} trajectories x H = {args.horizon} steps, "
          f"policy MLP {'x'.join(map(str, args.hidden))} tanh, best of {args.repeats}")
    print(f"{'operation':<52}{'time (ms)':>11}{'ratio':>9}")
    print(f"{'g(tau, theta), mean over the batch':<52}{t_g * 1e3:>11.2f}{1.0:>9.2f}")
    print(f"{'B(tau, theta) v, same batch':<52}{t_bv * 1e3:>11.2f}{t_bv / t_g:>9.2f}  (target <= 3)")
    print(f"{'REINFORCE update (g + Adam), batch':<52}{t_r * 1e3:>11.2f}{1.0:>9.2f}")
    print(f"{'N-HARPG update (g + B v + recursion), same batch':<52}{t_h * 1e3:>11.2f}{t_h / t_r:>9.2f}"
          "  (target <= 4)")
    print(f"{'REINFORCE learner step (sample n + update)':<52}{steps['reinforce'] * 1e3:>11.2f}{1.0:>9.2f}")
    print(f"{'N-HARPG learner step (sample 2n + update)':<52}{steps['nharpg'] * 1e3:>11.2f}"
          f"{steps['nharpg'] / steps['reinforce']:>9.2f}")


if __name__ == "__main__":
    main()
