"""Optimizers from ``optax.contrib``, registered by name with traced hyperparameters.

Special semantics:
- ``schedule_free_*`` train at the interpolated point y and keep the averaged sequence x
  implicitly; evaluate with ``gradlab.optim.eval_params`` (optax's
  ``schedule_free_eval_params``), not with the training parameters. Their own
  ``warmup_steps`` option is left off: use the chain's schedule instead.
- ``prodigy`` estimates the step size d in its state (starting at 1e-6); its
  ``learning_rate`` is a multiplier on d (paper: 1.0).
- ``muon`` orthogonalises the momentum of 2-D parameters (Newton-Schulz, 5 static
  iterations) and runs Adam (b1, b2, eps) on every other parameter (biases, scalars).
"""

from __future__ import annotations

from typing import Any

import optax
from optax import contrib

from gradlab.optim.registry import Hparams, inject, register


@register("schedule_free_adamw", ["learning_rate", "b1", "b2", "eps", "weight_decay"],
          "Defazio et al. 2024", learning_rate=2.5e-3)
def schedule_free_adamw(hp: Hparams) -> optax.GradientTransformation:
  """Schedule-free AdamW (Defazio et al. 2024, "The road less scheduled", Algorithm 1):
  y = (1 - b1) z + b1 x; z <- z - lr * (g(y) / (sqrt(v_hat) + eps) + weight_decay * y);
  x <- (1 - c) x + c z with c = lr^2 / sum lr^2 (weight_lr_power 2, fixed)."""
  return inject(contrib.schedule_free_adamw, **hp)


@register("schedule_free_sgd", ["learning_rate", "b1", "weight_decay"],
          "Defazio et al. 2024", learning_rate=1.0)
def schedule_free_sgd(hp: Hparams) -> optax.GradientTransformation:
  """Schedule-free SGD (Defazio et al. 2024, Algorithm 1 with the plain gradient step):
  y = (1 - b1) z + b1 x; z <- z - lr * (g(y) + weight_decay * y);
  x <- (1 - c) x + c z, c = lr^2 / sum lr^2."""
  return inject(contrib.schedule_free_sgd, **hp)


@register("muon", ["learning_rate", "momentum", "b1", "b2", "eps", "weight_decay"],
          "Jordan et al. 2024", learning_rate=0.02, momentum=0.95)
def muon(hp: Hparams) -> optax.GradientTransformation:
  """Muon (Jordan et al. 2024, "Muon: an optimizer for hidden layers in neural
  networks"; Bernstein and Newhouse 2024): for each 2-D parameter W,
  M <- momentum M + G; O = NewtonSchulz5(G + momentum M) (Nesterov form, ~ U V^T of the
  SVD), scaled by sqrt(max(1, fan_out / fan_in)); W <- W - lr (O + weight_decay W).
  Non-2-D parameters get Adam(lr, b1, b2, eps). ns_steps = 5 is static."""
  return inject(contrib.muon, static_args=("ns_steps",), learning_rate=hp["learning_rate"],
                beta=hp["momentum"], eps=hp["eps"], weight_decay=hp["weight_decay"],
                adam_b1=hp["b1"], adam_b2=hp["b2"])


def _prodigy(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.999, eps: Any = 1e-8,
             weight_decay: Any = 0.0) -> optax.GradientTransformation:
  # optax takes the betas as one tuple, which inject_hyperparams cannot trace.
  return contrib.prodigy(learning_rate, betas=(b1, b2), eps=eps, weight_decay=weight_decay)


@register("prodigy", ["learning_rate", "b1", "b2", "eps", "weight_decay"],
          "Mishchenko and Defazio 2024", learning_rate=1.0)
def prodigy(hp: Hparams) -> optax.GradientTransformation:
  """Prodigy (Mishchenko and Defazio 2024, "Prodigy: an expeditiously adaptive
  parameter-free learner", Algorithm 4): Adam on d_t-scaled gradients whose step size
  d_t is estimated online, d_t = max(d_{t-1}, r_t / ||s_t||_1) with
  r_t = b3 r + d lr_t <g, x_0 - x>, s_t = b3 s + d lr_t g (b3 = sqrt(b2), lr_t the
  bias-corrected lr); p <- p - lr_t (m / (sqrt(v) + d eps) + weight_decay p).
  lr is a multiplier on the estimate (paper 1.0)."""
  return inject(_prodigy, **hp)


def _adopt(learning_rate: Any, b1: Any = 0.9, b2: Any = 0.9999, eps: Any = 1e-6
           ) -> optax.GradientTransformation:
  # optax's adopt has a callable clip option that inject_hyperparams would take for a
  # schedule; this factory exposes only the numbers.
  return contrib.adopt(learning_rate, b1=b1, b2=b2, eps=eps)


@register("adopt", ["learning_rate", "b1", "b2", "eps"], "Taniguchi et al. 2024",
          b2=0.9999, eps=1e-6)
def adopt(hp: Hparams) -> optax.GradientTransformation:
  """ADOPT (Taniguchi et al. 2024, "ADOPT: modified Adam can converge with any beta2
  with the optimal rate", Algorithm 2): normalise by the PREVIOUS second moment,
  m <- b1 m + (1 - b1) clip(g / max(sqrt(v), eps), t^0.25); p <- p - lr m;
  v <- b2 v + (1 - b2) g^2 (v_0 = g_0^2, no step at t = 0). Paper b2 0.9999, eps 1e-6."""
  return inject(_adopt, **hp)


@register("ademamix", ["learning_rate", "b1", "b2", "b3", "alpha", "eps", "weight_decay"],
          "Pagliardini et al. 2024")
def ademamix(hp: Hparams) -> optax.GradientTransformation:
  """AdEMAMix (Pagliardini, Ablin and Grangier 2024, "The AdEMAMix optimizer: better,
  faster, older", Algorithm 1): a fast EMA m1 (b1, bias-corrected) and a slow EMA m2
  (b3, not corrected) of g; p <- p - lr ((m1_hat + alpha m2) / (sqrt(v_hat) + eps)
  + weight_decay p). Paper b3 0.9999, alpha 5 (their alpha/b3 warmups are left off)."""
  return inject(contrib.ademamix, **hp)
