"""The performance benchmark behind ``python -m experiments.benchmark``.

One preset (a tanh MLP on MNIST-1D trained with Adam over a grid of sigma_w x learning
rate) is timed five ways in one process: gradlab's sweep engine, a sequential loop over a
reused jitted single run, a plain PyTorch loop (when torch is importable), a large jitted
matmul for the device's float32 peak, and the engine with per-layer probes off.

Modules: `presets` (the grids and their configs), `flops` (matmul FLOP count and peak),
`jax_loop` (the sequential JAX loop), `torch_loop` (the PyTorch loop), `phases` (each
timed phase), `report` (table, JSON, Markdown), `runner` (the whole benchmark), `timing`
(what a timed loop reports), `__main__` (the absl entry point and its flags).

The package itself imports nothing, so ``python -m experiments.benchmark --help`` does
not start JAX: import from the modules (``experiments.benchmark.runner.run_benchmark``,
``experiments.benchmark.presets.PRESETS``).
"""
