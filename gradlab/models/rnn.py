"""Recurrent networks: Elman RNN, LSTM and GRU, scanned over time, with gradients through time.

    model.name = 'elman' | 'lstm' | 'gru'; model.width = hidden size H; model.depth =
    stacked layers (1 typical); model.activation = the Elman nonlinearity (tanh, relu,
    linear, ...); model.readout = 'last' (logits (B, K) from h_T) | 'every' (logits
    (B, T, K), one per step); model.bidirectional = also run every layer over
    reversed time (Schuster & Paliwal 1997, "Bidirectional recurrent neural networks").

Inputs are (B, T, D) sequences ((B, T) is read as D = 1). Layer l is two parameter
collections: ``input_l`` (kernel (D, G*H), bias (G*H,): x_t W + b for the G gate blocks)
and ``recurrent_l`` (kernel (H, G*H): h_{t-1} U), then ``readout`` (Dense). So
`layer_names` = ['input_0', 'recurrent_0', ..., 'readout'] and the probes report the
input and the recurrent gradient norms apart. Bidirectional: layer l also has
``input_l_bwd`` and ``recurrent_l_bwd``, a second recurrence of the same cell run from
t = T down to 1; its (B, T, H) outputs, in time order, are concatenated with the forward
ones into (B, T, 2H), the next layer's input (Graves & Schmidhuber 2005, "Framewise
phoneme classification with bidirectional LSTM"). The 'last' readout then reads
[h_T forward, h_1 backward] (each direction after the whole sequence). The through-time
probe below reports the forward direction of layer 0.

Init (unit scale here; `rnn_scale_rule` says which traced scale multiplies what):
- input kernels: the init family (``init.family``, LeCun N(0, 1/D) by default) x sigma_w;
- recurrent kernels: each H x H gate block at UNIT spectral radius, x ``spectral_radius``.
  ``init.recurrent_family='orthogonal'``: a random orthogonal block, every eigenvalue on
  the unit circle, so the block's spectral radius is exactly ``spectral_radius`` (Saxe
  et al. 2014; Le et al. 2015 use the identity, one orthogonal matrix). ``'gaussian'``:
  entries N(0, 1/H); by the circular law (Girko 1984; Tao & Vu 2010) the eigenvalues of
  a matrix with i.i.d. entries of variance 1/H fill the unit disk as H -> infinity, so
  the spectral radius is ~1 (a few percent off at H = 64) and ``spectral_radius`` acts
  as a GAIN, not an exact radius;
- biases: N(0, 1) x sigma_b; the readout: the init family x sigma_w, bias x sigma_b;
- LSTM forget gate: ``init.forget_bias`` is a constant added to the forget gate's
  pre-activation (as TensorFlow's BasicLSTMCell does), the same function and gradients
  as initializing its bias at forget_bias, but independent of sigma_b (Gers et al. 2000,
  "Learning to forget"; Jozefowicz et al. 2015, "An empirical exploration of recurrent
  network architectures", Sec. 3: forget bias 1).

Gradients through time (`probe_fn`): every layer's hidden sequence passes through
flax's ``self.perturb('h_l', ...)``, an additive zero (B, T, H) perturbation added to
h_t INSIDE the recurrence, so dL/d(perturbation_t) = dL/dh_t, the total derivative
through every later step. The probe returns, for layer 0, ``grad_h_norm`` (T,) =
||dL/dh_t|| (norm over batch and units) and ``grad_h_ratio`` = ||dL/dh_1|| / ||dL/dh_T||
(first step over last). Pascanu, Mikolov & Bengio 2013 ("On the difficulty of training
recurrent neural networks", Sec. 2.1, eq. 5-7): dh_T/dh_k is a product of T - k
Jacobians diag(f'(a_t)) U^T, so ||dh_T/dh_k|| <= (gamma * lambda_1)^(T-k), lambda_1 the
largest singular value of U and gamma a bound on |f'| (1 for tanh): lambda_1 < 1/gamma
is SUFFICIENT for vanishing, lambda_1 > 1/gamma NECESSARY for explosion. For a linear
RNN with an orthogonal U at radius rho and a readout at the last step,
dL/dh_t = (rho Q^T)^(T-t) dL/dh_T exactly, so the ratio is rho^(T-1).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradlab.config import register_keys
from gradlab.models.activations import ACTIVATIONS
from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.orthogonal import Orthogonal
from gradlab.models.registry import MODELS, Model
from gradlab.registry import ConfigError, Registry

Array = jax.Array

# The recurrent families' own keys: the readout, and the init section's recurrent
# family, forget-gate bias and the traced spectral radius of the recurrent kernels.
RNN_KEYS: dict[str, Any] = register_keys("model", dict(
  readout="last",        # last | every
  bidirectional=False,   # also a layer over reversed time; outputs concatenated (2H)
), family="rnn")
RNN_INIT_KEYS: dict[str, Any] = register_keys(
  "init", dict(spectral_radius=1.0, recurrent_family="orthogonal", forget_bias=0.0),
  family="rnn", traced=("spectral_radius",), non_negative=("spectral_radius",))

# --- recurrent kernels at unit spectral radius ------------------------------------------

RecurrentInit = Callable[[Array, int, int], Array]   # (key, H, G) -> (H, G*H)
RECURRENT_INITS: Registry[RecurrentInit] = Registry("recurrent init family")


@RECURRENT_INITS.register("orthogonal")
def orthogonal_blocks(key: Array, hidden: int, gates: int) -> Array:
  """G random orthogonal H x H blocks side by side: every block's eigenvalues lie on the
  unit circle (spectral radius exactly 1)."""
  keys = jax.random.split(key, gates)
  ortho = Orthogonal(1.0)  # jax's orthogonal init bit for bit, no batched QR under vmap
  return jnp.concatenate([ortho(k, (hidden, hidden), jnp.float32) for k in keys], axis=1)


@RECURRENT_INITS.register("gaussian")
def gaussian_blocks(key: Array, hidden: int, gates: int) -> Array:
  """Entries N(0, 1/H): each block's spectral radius -> 1 as H grows (circular law)."""
  return jax.random.normal(key, (hidden, gates * hidden), jnp.float32) / jnp.sqrt(hidden)


# --- cells: one step of the recurrence, as pure functions --------------------------------

class Cell(NamedTuple):
  """A recurrence. `step(carry, xw_BxGH, u_HxGH) -> (carry, pre_BxGH)` is one time step
  given the projected input xw = x_t W + b; `hidden(carry)` is h_t; `with_hidden(carry,
  h)` puts a (perturbed) h_t back; `zeros(B, H)` is the initial carry."""

  gates: int
  zeros: Callable[[int, int], Any]
  step: Callable[[Any, Array, Array], tuple[Any, Array]]
  hidden: Callable[[Any], Array]
  with_hidden: Callable[[Any, Array], Any]


CellFactory = Callable[[str, float], Cell]          # (activation, forget_bias) -> Cell
CELLS: Registry[CellFactory] = Registry("recurrent model")


def _h_only() -> dict[str, Any]:
  return dict(zeros=lambda b, h: jnp.zeros((b, h), jnp.float32), hidden=lambda c: c,
              with_hidden=lambda c, h: h)


@CELLS.register("elman")
def elman_cell(activation: str, forget_bias: float) -> Cell:
  """Elman 1990: h_t = f(x_t W + h_{t-1} U + b), f = model.activation."""
  del forget_bias
  act = ACTIVATIONS.get(activation)

  def step(h, xw, u):
    pre = xw + h @ u
    return act(pre), pre

  return Cell(gates=1, step=step, **_h_only())


@CELLS.register("lstm")
def lstm_cell(activation: str, forget_bias: float) -> Cell:
  """LSTM with a forget gate (Hochreiter & Schmidhuber 1997; Gers et al. 2000), gate
  blocks [i, f, g, o]: c_t = s(f + forget_bias) * c_{t-1} + s(i) * tanh(g),
  h_t = s(o) * tanh(c_t), s the logistic sigmoid. model.activation is not used."""
  del activation

  def step(carry, xw, u):
    c, h = carry
    pre = xw + h @ u
    i, f, g, o = jnp.split(pre, 4, axis=-1)
    c = jax.nn.sigmoid(f + forget_bias) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return (c, jax.nn.sigmoid(o) * jnp.tanh(c)), pre

  zeros = lambda b, n: (jnp.zeros((b, n), jnp.float32), jnp.zeros((b, n), jnp.float32))
  return Cell(gates=4, zeros=zeros, step=step, hidden=lambda c: c[1],
              with_hidden=lambda c, h: (c[0], h))


@CELLS.register("gru")
def gru_cell(activation: str, forget_bias: float) -> Cell:
  """GRU (Cho et al. 2014, eq. 5-8), gate blocks [z, r, n], the reset gate applied after
  the recurrent product (the cuDNN form): z = s(x W_z + h U_z + b_z),
  r = s(x W_r + h U_r + b_r), n = tanh(x W_n + r * (h U_n) + b_n),
  h_t = (1 - z) * n + z * h_{t-1}. model.activation is not used."""
  del activation, forget_bias

  def step(h, xw, u):
    hu = h @ u
    xz, xr, xn = jnp.split(xw, 3, axis=-1)
    hz, hr, hn = jnp.split(hu, 3, axis=-1)
    z, r = jax.nn.sigmoid(xz + hz), jax.nn.sigmoid(xr + hr)
    n = jnp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h, xw + hu

  return Cell(gates=3, step=step, **_h_only())


# --- the module ---------------------------------------------------------------------------

class RecurrentKernel(nn.Module):
  """Holds U (H, G*H) at unit spectral radius per gate block (scaled by spectral_radius
  afterwards)."""

  hidden: int
  gates: int
  family: str = "orthogonal"

  @nn.compact
  def __call__(self) -> Array:
    init = RECURRENT_INITS.get(self.family)
    return self.param("kernel", lambda k: init(k, self.hidden, self.gates))


READOUTS = ("last", "every")


class RNN(nn.Module):
  """`depth` stacked recurrent layers of `width` units and a Dense readout (see module
  docstring). Each layer's hidden sequence is perturbable as 'h_<l>' (collection
  'perturbations') for the through-time probe."""

  cell: str
  depth: int
  width: int
  num_outputs: int
  activation: str = "tanh"
  readout: str = "last"
  init_family: str = "lecun"
  recurrent_family: str = "orthogonal"
  forget_bias: float = 0.0
  use_bias: bool = True
  bidirectional: bool = False

  @nn.compact
  def __call__(self, x_BxTxD: Array, train: bool = False) -> Array:
    del train  # no train-time behaviour
    cell = CELLS.get(self.cell)(self.activation, self.forget_bias)
    h_BxTxH = x_BxTxD[..., None] if x_BxTxD.ndim == 2 else x_BxTxD
    h_BxTxH = h_BxTxH.astype(jnp.float32)
    for layer in range(self.depth):
      directions = [self._direction(cell, h_BxTxH, f"{layer}", reverse=False)]
      if self.bidirectional:
        directions.append(self._direction(cell, h_BxTxH, f"{layer}_bwd", reverse=True))
      h_BxTxH = jnp.concatenate(directions, axis=-1) if self.bidirectional else directions[0]
    if self.readout == "last":  # the backward direction has read everything at t = 0
      features = (jnp.concatenate([h_BxTxH[:, -1, :self.width], h_BxTxH[:, 0, self.width:]],
                                  axis=-1) if self.bidirectional else h_BxTxH[:, -1])
    else:
      features = h_BxTxH
    return nn.Dense(self.num_outputs, self.use_bias,
                    kernel_init=INIT_FAMILIES.get(self.init_family),
                    bias_init=unit_bias_init, name="readout")(features)

  def _direction(self, cell: Cell, h_BxTxD: Array, suffix: str, reverse: bool) -> Array:
    """One recurrent layer run over time (backwards when `reverse`, outputs still in
    time order): parameters input_<suffix> and recurrent_<suffix>, perturbation
    h_<suffix>; (B, T, H)."""
    batch, steps = h_BxTxD.shape[:2]
    xw_BxTxGH = nn.Dense(cell.gates * self.width, self.use_bias,
                         kernel_init=INIT_FAMILIES.get(self.init_family),
                         bias_init=unit_bias_init, name=f"input_{suffix}")(h_BxTxD)
    self.sow("intermediates", f"input_{suffix}_finite", jnp.all(jnp.isfinite(xw_BxTxGH)))
    u_HxGH = RecurrentKernel(self.width, cell.gates, self.recurrent_family,
                             name=f"recurrent_{suffix}")()
    eps_BxTxH = self.perturb(f"h_{suffix}", jnp.zeros((batch, steps, self.width)))

    def body(carry, inputs, u=u_HxGH):
      xw_BxGH, eps_BxH = inputs
      carry, pre = cell.step(carry, xw_BxGH, u)
      h_BxH = cell.hidden(carry) + eps_BxH   # dL/d eps_t = dL/dh_t (total derivative)
      return cell.with_hidden(carry, h_BxH), (h_BxH, jnp.all(jnp.isfinite(pre)))

    _, (h_TxBxH, finite_T) = jax.lax.scan(
      body, cell.zeros(batch, self.width),
      (jnp.swapaxes(xw_BxTxGH, 0, 1), jnp.swapaxes(eps_BxTxH, 0, 1)), reverse=reverse)
    self.sow("intermediates", f"recurrent_{suffix}_finite", jnp.all(finite_T))
    return jnp.swapaxes(h_TxBxH, 0, 1)


def rnn_layer_names(depth: int, bidirectional: bool = False) -> list[str]:
  """input_l, recurrent_l (then input_l_bwd, recurrent_l_bwd) per layer, then readout."""
  suffixes = ("", "_bwd") if bidirectional else ("",)
  return [f"{kind}_{layer}{sfx}" for layer in range(depth) for sfx in suffixes
          for kind in ("input", "recurrent")] + ["readout"]


def rnn_scale_rule(path: tuple[str, ...]) -> tuple[str, ...]:
  """recurrent_l/kernel x spectral_radius; every other kernel x sigma_w; biases x sigma_b."""
  leaf = path[-1] if path else ""
  if leaf == "kernel":
    return ("spectral_radius",) if path[0].startswith("recurrent_") else ("sigma_w",)
  return ("sigma_b",) if leaf == "bias" else ()


def through_time_probe(module: RNN) -> Callable[..., dict[str, Array]]:
  """probe_fn(variables, x, y, objective) -> {'grad_h_norm': (T,), 'grad_h_ratio': ()}:
  ||dL/dh_t|| of layer 0 for every t (norm over batch and units), through flax's
  perturbations, and ||dL/dh_1|| / ||dL/dh_T||."""

  def probe(variables: Mapping[str, Any], x: Array, y: Array,
            objective: Callable[[Any, Array], Array]) -> dict[str, Array]:
    steps = x.shape[1]
    suffixes = ("", "_bwd") if module.bidirectional else ("",)
    zeros = {f"h_{layer}{sfx}": jnp.zeros((x.shape[0], steps, module.width), jnp.float32)
             for layer in range(module.depth) for sfx in suffixes}
    params_only = {k: v for k, v in variables.items() if k != "perturbations"}

    def loss_of(perturbations):
      return objective(module.apply({**params_only, "perturbations": perturbations}, x), y)

    g_BxTxH = jax.grad(loss_of)(zeros)["h_0"]
    norm_T = jnp.sqrt(jnp.sum(jnp.square(g_BxTxH), axis=(0, 2)))
    return {"grad_h_norm": norm_T, "grad_h_ratio": norm_T[0] / norm_T[-1]}

  return probe


def _option(cfg: Any, key: str, default: Any) -> Any:
  if cfg is None:
    return default
  return cfg.get(key, default) if hasattr(cfg, "get") else getattr(cfg, key, default)


def build_rnn(cell: str, model_cfg: Any, init_family: str, num_outputs: int,
              init_cfg: Any = None) -> Model:
  """The registered builder of one cell. `init_cfg` (the config's init section) supplies
  ``recurrent_family`` and ``forget_bias``; None means 'orthogonal' and 0."""
  readout = str(_option(model_cfg, "readout", "last"))
  if readout not in READOUTS:
    raise ConfigError(f"unknown model.readout '{readout}'; known: {', '.join(READOUTS)}")
  family = str(_option(init_cfg, "recurrent_family", "orthogonal"))
  RECURRENT_INITS.get(family)  # ConfigError naming the known families
  if cell == "elman":
    ACTIVATIONS.get(model_cfg.activation)
  module = RNN(cell=cell, depth=int(model_cfg.depth), width=int(model_cfg.width),
               num_outputs=num_outputs, activation=str(model_cfg.activation),
               readout=readout, init_family=init_family, recurrent_family=family,
               forget_bias=float(_option(init_cfg, "forget_bias", 0.0)),
               use_bias=bool(_option(model_cfg, "use_bias", True)),
               bidirectional=bool(_option(model_cfg, "bidirectional", False)))
  # hidden_layers (): gradients compound through TIME (the through-time probe), not
  # across the few stacked layers
  return Model(module=module, layer_names=rnn_layer_names(int(model_cfg.depth),
                                                          module.bidirectional),
               scale_rule=rnn_scale_rule, probe_fn=through_time_probe(module))


def _register(cell: str) -> None:
  def build(model_cfg: Any, init_family: str, num_outputs: int, init_cfg: Any = None
            ) -> Model:
    return build_rnn(cell, model_cfg, init_family, num_outputs, init_cfg)

  build.__doc__ = f"model.name='{cell}': {CELLS.get(cell).__doc__}"
  MODELS.register(cell)(build)


for _cell in CELLS:
  _register(_cell)
