"""Adam and its relatives, registered by name.

Notation: g gradient, p parameter, t the 1-based step, m/v the first/second moment EMAs
m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2, m_hat = m / (1 - b1^t),
v_hat = v / (1 - b2^t). Decoupled weight decay (Loshchilov and Hutter 2019) adds
lr * weight_decay * p to the step. Every number is injected (traced).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from gradlab.optim.registry import Hparams, inject, register

_ADAM = ["learning_rate", "b1", "b2", "eps"]
_ADAMW = [*_ADAM, "weight_decay"]


def _adam_like(fn, hp: Hparams, **fixed) -> optax.GradientTransformation:
  return inject(fn, **hp, **fixed)


@register("adam", _ADAM, "Kingma and Ba 2015")
def adam(hp: Hparams) -> optax.GradientTransformation:
  """Adam (Kingma and Ba 2015, Algorithm 1): p <- p - lr * m_hat / (sqrt(v_hat) + eps)."""
  return _adam_like(optax.adam, hp)


@register("adamw", _ADAMW, "Loshchilov and Hutter 2019")
def adamw(hp: Hparams) -> optax.GradientTransformation:
  """AdamW (Loshchilov and Hutter 2019, "Decoupled weight decay regularization",
  Algorithm 2): p <- p - lr * (m_hat / (sqrt(v_hat) + eps) + weight_decay * p)."""
  return _adam_like(optax.adamw, hp)


@register("nadam", _ADAM, "Dozat 2016")
def nadam(hp: Hparams) -> optax.GradientTransformation:
  """Nadam (Dozat 2016, "Incorporating Nesterov momentum into Adam"), optax's form:
  p <- p - lr * (b1 m / (1 - b1^(t+1)) + (1 - b1) g / (1 - b1^t)) / (sqrt(v_hat) + eps)."""
  return _adam_like(optax.nadam, hp)


@register("nadamw", _ADAMW, "Dozat 2016; Loshchilov and Hutter 2019")
def nadamw(hp: Hparams) -> optax.GradientTransformation:
  """Nadam with decoupled weight decay: the nadam step plus lr * weight_decay * p."""
  return _adam_like(optax.nadamw, hp)


@register("radam", _ADAM, "Liu et al. 2020")
def radam(hp: Hparams) -> optax.GradientTransformation:
  """RAdam (Liu et al. 2020, "On the variance of the adaptive learning rate and beyond",
  Algorithm 2): rho_t = rho_inf - 2 t b2^t / (1 - b2^t), rho_inf = 2 / (1 - b2) - 1; while
  rho_t <= 5 (fixed threshold) the step is the un-adapted lr * m_hat, after it Adam's
  step times the rectification r_t = sqrt((rho_t-4)(rho_t-2) rho_inf /
  ((rho_inf-4)(rho_inf-2) rho_t))."""
  return _adam_like(optax.radam, hp)


@register("adamax", _ADAM, "Kingma and Ba 2015", learning_rate=2e-3)
def adamax(hp: Hparams) -> optax.GradientTransformation:
  """AdaMax (Kingma and Ba 2015, Section 7.1, Algorithm 2): u <- max(b2 u, |g|);
  p <- p - lr * m_hat / (u + eps). Paper lr 0.002."""
  return _adam_like(optax.adamax, hp)


@register("amsgrad", _ADAM, "Reddi et al. 2018")
def amsgrad(hp: Hparams) -> optax.GradientTransformation:
  """AMSGrad (Reddi, Kale and Kumar 2018, "On the convergence of Adam and beyond",
  Algorithm 2): v_max <- max(v_max, v_hat); p <- p - lr * m_hat / (sqrt(v_max) + eps)."""
  return _adam_like(optax.amsgrad, hp)


@register("adabelief", _ADAM, "Zhuang et al. 2020", eps=1e-16)
def adabelief(hp: Hparams) -> optax.GradientTransformation:
  """AdaBelief (Zhuang et al. 2020, "AdaBelief optimizer: adapting stepsizes by the
  belief in observed gradients", Algorithm 2): s <- b2 s + (1 - b2)(g - m)^2 + eps_root
  (eps_root = 1e-16 fixed); p <- p - lr * m_hat / (sqrt(s_hat) + eps). Paper eps 1e-16."""
  return _adam_like(optax.adabelief, hp)


@register("yogi", _ADAM, "Zaheer et al. 2018", learning_rate=1e-2, eps=1e-3)
def yogi(hp: Hparams) -> optax.GradientTransformation:
  """Yogi (Zaheer et al. 2018, "Adaptive methods for nonconvex optimization",
  Algorithm 2): v <- v - (1 - b2) sign(v - g^2) g^2 (v starts at 1e-6);
  p <- p - lr * m / (sqrt(v) + eps). Paper lr 1e-2, eps 1e-3."""
  return _adam_like(optax.yogi, hp)


@register("lamb", _ADAMW, "You et al. 2020", eps=1e-6)
def lamb(hp: Hparams) -> optax.GradientTransformation:
  """LAMB (You et al. 2020, "Large batch optimization for deep learning: training BERT
  in 76 minutes", Algorithm 2): r = m_hat / (sqrt(v_hat) + eps) + weight_decay * p;
  per parameter array p <- p - lr * (||p|| / ||r||) * r. Paper eps 1e-6."""
  return _adam_like(optax.lamb, hp)


@register("novograd", _ADAMW, "Ginsburg et al. 2019", b1=0.95, b2=0.98)
def novograd(hp: Hparams) -> optax.GradientTransformation:
  """NovoGrad (Ginsburg et al. 2019, "Stochastic gradient methods with layer-wise
  adaptive moments for training of deep networks", Algorithm 1): per parameter array l,
  v_l <- b2 v_l + (1 - b2) ||g_l||^2 (v_l = ||g_l||^2 at t = 1);
  m <- b1 m + (g / (sqrt(v_l) + eps) + weight_decay * p); p <- p - lr * m.
  Paper b1 0.95, b2 0.98."""
  return _adam_like(optax.novograd, hp)


@register("adan", [*_ADAMW, "b3"], "Xie et al. 2024", b1=0.98, b2=0.92, b3=0.99)
def adan(hp: Hparams) -> optax.GradientTransformation:
  """Adan (Xie et al. 2024, "Adan: adaptive Nesterov momentum algorithm for faster
  optimizing deep models", Algorithm 1), in optax's convention b_i = 1 - beta_i:
  m <- b1 m + (1-b1) g; d <- b2 d + (1-b2)(g - g_prev);
  n <- b3 n + (1-b3) (g + b2 (g - g_prev))^2;
  p <- (p - lr (m_hat + b2 d_hat) / (sqrt(n_hat) + eps)) / (1 + lr weight_decay).
  Paper (beta1, beta2, beta3) = (0.02, 0.08, 0.01), i.e. b1 0.98, b2 0.92, b3 0.99."""
  return _adam_like(optax.adan, hp)


ATAN2_A, ATAN2_B = 1.27, 1.0  # Everett et al. 2024's constants (a ~ 4/pi: a * atan2(1, 1) = 1)


class Atan2State(NamedTuple):
  count: jax.Array
  mu: Any
  nu: Any


def scale_by_adam_atan2(b1: float = 0.9, b2: float = 0.999, a: float = ATAN2_A,
                        b: float = ATAN2_B) -> optax.GradientTransformation:
  """Adam's moments with the ratio m_hat / (sqrt(v_hat) + eps) replaced by
  a * atan2(m_hat, b * sqrt(v_hat)) (Everett et al. 2024, "Scaling Exponents Across
  Parameterizations and Optimizers", Sec. 6): bounded, defined at v = 0, and invariant
  to rescaling the gradient, so no epsilon can swamp a small gradient."""

  def init(params: Any) -> Atan2State:
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return Atan2State(jnp.zeros([], jnp.int32), zeros, zeros)

  def update(updates: Any, state: Atan2State, params: Any = None) -> tuple[Any, Atan2State]:
    del params
    mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
    nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
    count = state.count + 1
    c1, c2 = 1 - b1 ** count, 1 - b2 ** count
    out = jax.tree_util.tree_map(
      lambda m, v: a * jnp.arctan2(m / c1, b * jnp.sqrt(v / c2)), mu, nu)
    return out, Atan2State(count, mu, nu)

  return optax.GradientTransformation(init, update)


def _adam_atan2(learning_rate: Any, b1: float, b2: float) -> optax.GradientTransformation:
  return optax.chain(scale_by_adam_atan2(b1, b2), optax.scale_by_learning_rate(learning_rate))


@register("adam_atan2", ["learning_rate", "b1", "b2"], "Everett et al. 2024")
def adam_atan2(hp: Hparams) -> optax.GradientTransformation:
  """Adam-atan2 (Everett et al. 2024, Sec. 6): p <- p - lr * 1.27 atan2(m_hat, sqrt(v_hat)),
  Adam without epsilon (`scale_by_adam_atan2`)."""
  return _adam_like(_adam_atan2, hp)
