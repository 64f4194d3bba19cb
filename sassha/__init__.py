"""SASSHA core: optimizers, Hessian estimation, workloads, one trial and sharpness metrics."""
