"""The PyTorch loop: the benchmark's model, init, optimizer and sampling in plain PyTorch.

Per point: a tanh MLP of `torch.nn.Linear` layers with gradlab's init (LeCun normal
kernels W = sigma_w * N(0, 1) / sqrt(fan_in), biases sigma_b * N(0, 1)),
``torch.optim.Adam`` with the point's lr, b1, b2, eps (the same update as optax.adam),
minibatches drawn uniformly with replacement, cross-entropy. Each step records the loss
and the global gradient norm (gradlab's tracker reads both every step); the eval-slice
loss is taken before and after training and the test loss and accuracy at the end, as
gradlab does. It runs one point after another on the CPU with `threads` threads.

Denormals: XLA's CPU runtime flushes denormal floats to zero while it runs gradlab; torch
does not by default, and on x86 every operation on a denormal is slow. Adam's second
moment of a vanishing gradient (small sigma_w, deep net) underflows into that range, so
by default the loop calls ``torch.set_flush_denormal(True)`` to do the same arithmetic as
XLA (``flush_denormal=False`` times torch's default instead).

torch is optional: `import_torch` returns None when it is not importable, and the
benchmark then skips this loop with a note. It is not a requirement of gradlab.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from experiments.benchmark.timing import LoopTiming, peak_rss_mb, subset_note, time_points


def import_torch() -> ModuleType | None:
  """The torch module, or None when it is not installed."""
  try:
    import torch
  except ImportError:
    return None
  return torch


def build_mlp(torch: ModuleType, dims: Sequence[tuple[int, int]], sigma_w: float,
              sigma_b: float, generator: Any) -> Any:
  """`torch.nn.Sequential` of Linear layers with tanh between them, gradlab's init."""
  layers = []
  for i, (fan_in, fan_out) in enumerate(dims):
    linear = torch.nn.Linear(fan_in, fan_out)
    with torch.no_grad():
      linear.weight.normal_(generator=generator).mul_(sigma_w / math.sqrt(fan_in))
      linear.bias.normal_(generator=generator).mul_(sigma_b)
    layers.append(linear)
    if i < len(dims) - 1:
      layers.append(torch.nn.Tanh())
  return torch.nn.Sequential(*layers)


def train_point(torch: ModuleType, arrays: Mapping[str, Any], dims: Sequence[tuple[int, int]],
                hp: Mapping[str, float], seed: int, batch_size: int, steps: int
                ) -> dict[str, Any]:
  """Trains one point; returns its per-step loss and gradient norm and its eval numbers."""
  f = torch.nn.functional
  generator = torch.Generator().manual_seed(int(seed))
  model = build_mlp(torch, dims, hp["sigma_w"], hp["sigma_b"], generator)
  params = list(model.parameters())
  opt = torch.optim.Adam(params, lr=hp["learning_rate"], betas=(hp["b1"], hp["b2"]),
                         eps=hp["eps"])
  x_train, y_train = arrays["x_train"], arrays["y_train"]
  loss_by_step = torch.empty(steps)
  grad_norm_by_step = torch.empty(steps)
  with torch.no_grad():
    initial_loss = f.cross_entropy(model(arrays["x_eval"]), arrays["y_eval"])
  for step in range(steps):
    idx = torch.randint(0, x_train.shape[0], (batch_size,), generator=generator)
    opt.zero_grad(set_to_none=True)
    loss = f.cross_entropy(model(x_train[idx]), y_train[idx])
    loss.backward()
    with torch.no_grad():
      loss_by_step[step] = loss
      grad_norm_by_step[step] = torch.linalg.vector_norm(
        torch.stack([torch.linalg.vector_norm(p.grad) for p in params]))
    opt.step()
  with torch.no_grad():
    final_loss = f.cross_entropy(model(arrays["x_eval"]), arrays["y_eval"])
    logits = model(arrays["x_test"])
    test_loss = f.cross_entropy(logits, arrays["y_test"])
    test_accuracy = (logits.argmax(-1) == arrays["y_test"]).float().mean()
  return {"loss": loss_by_step.numpy(), "grad_norm": grad_norm_by_step.numpy(),
          "initial_loss": float(initial_loss), "final_loss": float(final_loss),
          "test_loss": float(test_loss), "test_accuracy": float(test_accuracy)}


def torch_arrays(torch: ModuleType, dataset: Any, eval_size: int) -> dict[str, Any]:
  """The dataset as CPU tensors (int64 labels), with gradlab's eval slice of train."""
  n_eval = min(int(eval_size), len(dataset.x_train)) if eval_size > 0 else len(dataset.x_train)
  x_test = dataset.x_test if dataset.x_test is not None else dataset.x_train
  y_test = dataset.y_test if dataset.y_test is not None else dataset.y_train

  def flat(x: np.ndarray) -> Any:
    return torch.from_numpy(np.ascontiguousarray(x.reshape(len(x), -1), np.float32))

  def labels(y: np.ndarray) -> Any:
    return torch.from_numpy(np.asarray(y, np.int64))

  return {"x_train": flat(dataset.x_train), "y_train": labels(dataset.y_train),
          "x_eval": flat(dataset.x_train[:n_eval]), "y_eval": labels(dataset.y_train[:n_eval]),
          "x_test": flat(x_test), "y_test": labels(y_test)}


def time_torch(torch: ModuleType, points: Sequence[Mapping[str, float]], seeds: Sequence[int],
               dataset: Any, dims: Sequence[tuple[int, int]], batch_size: int, steps: int,
               eval_size: int, threads: int, budget_s: float = float("inf"),
               flush_denormal: bool = True) -> LoopTiming:
  """Times the PyTorch loop over `points` (a subset when `budget_s` runs out)."""
  torch.set_num_threads(threads)
  flushing = bool(torch.set_flush_denormal(flush_denormal)) and flush_denormal
  arrays = torch_arrays(torch, dataset, eval_size)
  # One short untimed point first: the first use of each kernel pays one-off setup.
  train_point(torch, arrays, dims, points[0], seeds[0], batch_size, min(steps, 2))
  run_s, timed = time_points(
    lambda i: train_point(torch, arrays, dims, points[i], seeds[i], batch_size, steps),
    len(points), budget_s)
  torch.set_flush_denormal(False)
  note = (f"{subset_note(timed, len(points))}; torch {torch.__version__}, {threads} threads, "
          f"denormals {'flushed to zero' if flushing else 'kept (torch default)'}")
  return LoopTiming("PyTorch loop", len(points), timed, steps, 0.0, run_s,
                    peak_rss_mb=peak_rss_mb(), note=note)


