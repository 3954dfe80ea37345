"""trpojax: trust-region and Hessian-aided policy-gradient training in JAX."""
