"""Cost of one Fisher-vector product against one gradient of the TRPO surrogate, on the same batch.

Target: one Fisher-vector product <= 3x one surrogate gradient. Prints both timings and the ratios for the
fresh forward-over-reverse product (``linalg.fisher_vector_product``), the linearised Hessian of the KL
(``linalg.make_fisher_vector_product``) and the factored J^T M J operator TRPO's conjugate gradient uses
(``linalg.make_gauss_newton_fvp``).

    python -m benchmarks.fvp_cost [--batch 2048] [--env CartPole-v1]
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

from benchmarks._timing import best_of, machine
from trpojax.core.linalg import fisher_vector_product, make_fisher_vector_product, make_gauss_newton_fvp
from trpojax.envs import make_env
from trpojax.networks import PolicyNetwork


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--env", default="CartPole-v1")
    args = parser.parse_args()
    spec = make_env(args.env)
    policy = PolicyNetwork(spec.action_dim, spec.discrete, (64, 64), "tanh")
    k1, k2, k3, k4 = jax.random.split(jax.random.PRNGKey(0), 4)
    obs = jax.random.normal(k1, (args.batch, spec.obs_dim))
    params = policy.init(k2, obs[0])
    actions = policy.apply(params, obs).sample(k3)
    adv = jax.random.normal(k4, (args.batch,))
    v = jax.tree.map(jnp.ones_like, params)

    def surrogate(p, old):
        return jnp.mean(jnp.exp(policy.apply(p, obs).log_prob(actions) - old.log_prob(actions)) * adv)

    def kl_fn(p, old):
        return jnp.mean(old.kl(policy.apply(p, obs)))

    old = jax.lax.stop_gradient(policy.apply(params, obs))
    grad = jax.jit(lambda p: jax.grad(surrogate)(p, old))
    fvp = jax.jit(lambda p, v: fisher_vector_product(lambda q: kl_fn(q, old), p, v, 0.1))
    lin = make_fisher_vector_product(lambda q: kl_fn(q, old), params, 0.1)
    lin_fvp = jax.jit(lin)
    gauss_newton = make_gauss_newton_fvp(lambda q: policy.apply(q, obs), lambda d: jnp.mean(old.kl(d)), params, 0.1)
    gn_fvp = jax.jit(gauss_newton)
    t_grad = best_of(lambda: grad(params), 20)
    t_fvp = best_of(lambda: fvp(params, v), 20)
    t_lin = best_of(lambda: lin_fvp(v), 20)
    t_gn = best_of(lambda: gn_fvp(v), 20)
    print(f"machine: {machine()}")
    print(f"{args.env}, batch {args.batch}, policy MLP 64x64 tanh")
    print(f"{'operation':<38}{'time (us)':>12}{'x gradient':>12}")
    print(f"{'surrogate gradient':<38}{t_grad * 1e6:>12.1f}{1.0:>12.2f}")
    print(f"{'FVP, forward-over-reverse':<38}{t_fvp * 1e6:>12.1f}{t_fvp / t_grad:>12.2f}")
    print(f"{'FVP, KL Hessian linearised once':<38}{t_lin * 1e6:>12.1f}{t_lin / t_grad:>12.2f}")
    print(f"{'FVP, J^T M J (used in CG)':<38}{t_gn * 1e6:>12.1f}{t_gn / t_grad:>12.2f}")


if __name__ == "__main__":
    main()
