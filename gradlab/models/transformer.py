"""Transformers: a decoder-only language model and an encoder classifier sharing one block.

Registered models:

- ``transformer_lm``: tokens (B, T) int -> next-token logits (B, T, V), causal attention,
  V = the dataset's number of classes (its vocabulary).
- ``transformer_classifier``: tokens (B, T) int -> class logits (B, K), bidirectional
  attention, the final hidden states mean-pooled over T, an untied Dense readout.

Static options (``model.*``): depth (blocks), width (D), heads, mlp_ratio (the MLP's
hidden width is mlp_ratio * D), activation (the MLP's; configs use ``gelu``), use_bias,
vocab_size (input vocabulary; 0 = the number of outputs), and

- ``ln_position``: ``pre`` (x + f(norm(x)), and a final norm before the head), ``post``
  (norm(x + f(x)), the original Transformer), or ``none`` (x + f(x), no norm at all).
  Xiong et al. 2020 ("On Layer Normalization in the Transformer Architecture",
  Theorem 1): at init the gradient of the last layer's parameters is O(d sqrt(ln d))
  with Post-LN, independent of depth L, and O(d sqrt(ln d / L)) with Pre-LN.
- ``norm``: ``layer`` (LayerNorm) or ``rms`` (RMSNorm); ``none``, the schema's shared
  default, means ``layer`` here (no norm at all is ``ln_position='none'``).
- ``qk_norm``: normalize queries and keys per head before their dot product
  (Dehghani et al. 2023, ViT-22B; Wortsman et al. 2023, Sec. 3.1).
- ``tied_embeddings`` (LM only): the head is the token embedding E itself, logits =
  g * h E^T / sqrt(D) with the 1/sqrt(D) of PaLM (Chowdhery et al. 2022, Sec. 2,
  "Shared Input-Output Embeddings") and g a fixed scalar (``head/gain``, 1 at unit
  scale, gradient stopped).
- ``positions``: ``learned`` (a (T, D) table added to the token embeddings) or
  ``rotary`` (Su et al. 2021, RoFormer, eq. 34, applied to q and k in every layer).
- ``scale_residual``: multiply the unit init of every residual output projection
  (``attn/out`` and ``mlp/down``) by 1/sqrt(2 depth), as GPT-2 does (Radford et al.
  2019, Sec. 2.3), a static factor.

Initialization (`transformer_scale_rule`): every parameter starts at unit scale (token and
position tables ~ N(0, 1); kernels from ``init.family``, e.g. LeCun N(0, 1/fan_in); biases
~ N(0, 1); norm scales 1) and `gradlab.models.init.scale_params` multiplies, with traced
numbers:

====================================  ====================================
parameter                             multiplied by
====================================  ====================================
embed/token, embed/position           init.embed_scale
block_i/attn/{query,key,value,out}    init.sigma_w * init.attn_scale
block_i/mlp/{up,down} kernels         init.sigma_w * init.mlp_scale
head/readout kernel, head/gain (tied) init.output_scale
every Dense bias                      init.sigma_b
norm scales and biases                1 (unscaled)
====================================  ====================================

Gradient norms are reported per layer over ``layer_names``: ``embed``, ``block_0`` ..
``block_{depth-1}``, ``head`` (the final norm and readout). Probes sown per block
(`gradlab.models.attention`): ``probe_attn_logit_max``, ``probe_attn_entropy``; and once
on the output logits: ``probe_output_logit_mean`` (mean over every logit) and
``probe_output_logit_max`` (max |logit|), the quantities of Wortsman et al. 2023's
output-logit divergence (Sec. 3.2), which z-loss (Chowdhery et al. 2022, Sec. 5,
``train.z_loss``) keeps near zero.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from gradlab.config import register_keys
from gradlab.models.activations import ACTIVATIONS
from gradlab.models.attention import NORMS, Initializer, SelfAttention
from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.parameterization import dense, for_model
from gradlab.models.registry import MODELS, Model
from gradlab.registry import ConfigError, Registry

# The Transformers' own keys: the model options, and the traced init multipliers on top
# of sigma_w (the scale rule says which parameters each multiplies).
TRANSFORMER_KEYS: dict[str, Any] = register_keys("model", dict(
  heads=4, mlp_ratio=4, ln_position="pre", qk_norm=False, tied_embeddings=True,
  positions="learned", scale_residual=False,
  vocab_size=0,  # transformer input vocabulary; 0 = the dataset's number of classes
), family="transformer")
_SCALES = ("embed_scale", "attn_scale", "mlp_scale", "output_scale")
TRANSFORMER_INIT_KEYS: dict[str, Any] = register_keys(
  "init", dict.fromkeys(_SCALES, 1.0), family="transformer", traced=_SCALES,
  non_negative=_SCALES)

LN_POSITIONS = ("pre", "post", "none")
POSITIONS = ("learned", "rotary")
unit_embed_init: Initializer = nn.initializers.normal(1.0)


def _scaled(init: Initializer, factor: float) -> Initializer:
  """`init` times a static factor (the 1/sqrt(2 depth) of ``scale_residual``)."""
  if factor == 1.0:
    return init
  return lambda key, shape, dtype=jnp.float32: factor * init(key, shape, dtype)


class MLPBlock(nn.Module):
  """Dense(mlp_ratio * D) ``up``, activation, Dense(D) ``down``."""

  hidden: int
  activation: str
  use_bias: bool
  kernel_init: Initializer
  out_init: Initializer
  multiplier: float = 1.0  # model.parameterization's hidden multiplier

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    h = dense(self.hidden, self.use_bias, self.multiplier, "up", self.kernel_init,
              unit_bias_init)(x_BxTxD)
    h = ACTIVATIONS.get(self.activation)(h)
    return dense(x_BxTxD.shape[-1], self.use_bias, self.multiplier, "down", self.out_init,
                 unit_bias_init)(h)


class Block(nn.Module):
  """One Transformer block: attention then MLP, each a residual branch.

  pre: x + f(norm(x)); post: norm(x + f(x)); none: x + f(x) (Xiong et al. 2020, fig. 1).
  Norms are ``ln_attn`` and ``ln_mlp``.
  """

  heads: int
  mlp_ratio: int
  ln_position: str
  norm: str
  qk_norm: bool
  causal: bool
  rotary: bool
  activation: str
  use_bias: bool
  kernel_init: Initializer
  out_init: Initializer
  multiplier: float = 1.0        # model.parameterization: hidden kernels
  logit_multiplier: float = 1.0  # and attention logits (muP's 1/d attention)

  @nn.compact
  def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
    attn = SelfAttention(self.heads, self.causal, self.qk_norm, self.norm, self.rotary,
                         self.use_bias, self.kernel_init, self.out_init, unit_bias_init,
                         self.multiplier, self.logit_multiplier, name="attn")
    mlp = MLPBlock(self.mlp_ratio * x_BxTxD.shape[-1], self.activation, self.use_bias,
                   self.kernel_init, self.out_init, self.multiplier, name="mlp")
    h = x_BxTxD
    for branch, norm_name in ((attn, "ln_attn"), (mlp, "ln_mlp")):
      h = RESIDUALS.get(self.ln_position)(h, branch, lambda n=norm_name: NORMS.get(self.norm)(
        name=n))
    return h


RESIDUALS: Registry[Any] = Registry("model.ln_position")
RESIDUALS.register("pre")(lambda x, f, norm: x + f(norm()(x)))
RESIDUALS.register("post")(lambda x, f, norm: norm()(x + f(x)))
RESIDUALS.register("none")(lambda x, f, norm: x + f(x))


class Embed(nn.Module):
  """Token table ``token`` (V, D) and, with learned positions, ``position`` (T, D)."""

  vocab_size: int
  width: int
  learned_positions: bool

  @nn.compact
  def __call__(self, tokens_BxT: jax.Array) -> tuple[jax.Array, jax.Array]:
    table_VxD = self.param("token", unit_embed_init, (self.vocab_size, self.width))
    h = table_VxD[tokens_BxT]
    if self.learned_positions:
      h = h + self.param("position", unit_embed_init, (tokens_BxT.shape[1], self.width))
    return h, table_VxD


class Transformer(nn.Module):
  """The shared trunk: Embed ``embed``, blocks ``block_0`` .., head ``head``.

  ``pool='none'`` returns per-position logits (B, T, num_outputs) (LM); ``pool='mean'``
  averages the final hidden states over T and returns (B, num_outputs) (classifier).
  """

  vocab_size: int
  num_outputs: int
  depth: int
  width: int
  heads: int
  mlp_ratio: int
  ln_position: str
  norm: str
  qk_norm: bool
  tied_embeddings: bool
  positions: str
  scale_residual: bool
  causal: bool
  pool: str
  activation: str = "gelu"
  use_bias: bool = True
  init_family: str = "lecun"
  remat: bool = False  # train.remat: recompute each block's activations in the backward
  # model.parameterization: (hidden kernels, readout kernel, attention logits) multipliers
  multipliers: tuple[float, float, float] = (1.0, 1.0, 1.0)
  readout_zero_init: bool = False  # model.readout_zero_init (untied heads)

  @nn.compact
  def __call__(self, tokens_BxT: jax.Array, train: bool = False) -> jax.Array:
    del train  # no dropout, no batch statistics
    kernel_init = INIT_FAMILIES.get(self.init_family)
    out_init = _scaled(kernel_init, 1.0 / np.sqrt(2 * self.depth) if self.scale_residual
                       else 1.0)
    tokens_BxT = tokens_BxT.astype(jnp.int32)
    h, table_VxD = Embed(self.vocab_size, self.width, self.positions == "learned",
                         name="embed")(tokens_BxT)
    self.sow("intermediates", "embed_finite", jnp.all(jnp.isfinite(h)))
    block = nn.remat(Block) if self.remat else Block
    for i in range(self.depth):
      h = block(self.heads, self.mlp_ratio, self.ln_position, self.norm, self.qk_norm,
                self.causal, self.positions == "rotary", self.activation, self.use_bias,
                kernel_init, out_init, self.multipliers[0], self.multipliers[2],
                name=f"block_{i}")(h)
      self.sow("intermediates", f"block_{i}_finite", jnp.all(jnp.isfinite(h)))
    logits = Head(self.num_outputs, self.ln_position == "pre", self.norm,
                  self.tied_embeddings and self.pool == "none", self.pool, self.use_bias,
                  nn.initializers.zeros_init() if self.readout_zero_init else kernel_init,
                  self.multipliers[1], name="head")(h, table_VxD)
    self.sow("intermediates", "probe_output_logit_mean", jnp.mean(logits))
    self.sow("intermediates", "probe_output_logit_max", jnp.max(jnp.abs(logits)))
    return logits


class Head(nn.Module):
  """Final norm (Pre-LN only, ``norm``), pooling, and the readout: Dense ``readout``, or
  with tied embeddings gain * h E^T / sqrt(D) (``gain`` a fixed scalar)."""

  num_outputs: int
  final_norm: bool
  norm: str
  tied: bool
  pool: str
  use_bias: bool
  kernel_init: Initializer
  multiplier: float = 1.0  # model.parameterization's readout multiplier

  @nn.compact
  def __call__(self, h_BxTxD: jax.Array, table_VxD: jax.Array) -> jax.Array:
    if self.final_norm:
      h_BxTxD = NORMS.get(self.norm)(name="norm")(h_BxTxD)
    if self.pool == "mean":
      h_BxTxD = jnp.mean(h_BxTxD, axis=1)
    if self.tied:
      gain = jax.lax.stop_gradient(self.param("gain", nn.initializers.ones, ()))
      return gain * (h_BxTxD @ table_VxD.T) / jnp.sqrt(h_BxTxD.shape[-1])
    return dense(self.num_outputs, self.use_bias, self.multiplier, "readout",
                 self.kernel_init, unit_bias_init)(h_BxTxD)


_ATTN = ("query", "key", "value", "out")


def transformer_scale_rule(path: tuple[str, ...]) -> tuple[str, ...]:
  """Which traced init multipliers scale the parameter at `path` (table in the module
  docstring). Norm parameters (``ln_*``, ``*_norm``, ``head/norm``) are left alone."""
  top, leaf = path[0], path[-1]
  if top == "embed":
    return ("embed_scale",)
  if leaf == "bias":
    return () if any("norm" in p or p.startswith("ln_") for p in path) else ("sigma_b",)
  if top == "head":
    return ("output_scale",) if leaf in ("kernel", "gain") else ()
  if leaf == "kernel" and "attn" in path and path[-2] in _ATTN:
    return ("sigma_w", "attn_scale")
  if leaf == "kernel" and "mlp" in path:
    return ("sigma_w", "mlp_scale")
  return ()


def transformer_kind(path: tuple[str, ...]) -> str:
  """The parameterization kind of a Transformer parameter: the token and position tables
  are the input layer, the attention and MLP kernels hidden, the readout kernel the
  output; biases and norm parameters width-n vectors, the readout's bias fixed."""
  top, leaf = path[0], path[-1]
  if top == "embed":
    return "input"
  if top == "head" and "readout" in path:
    return "output" if leaf == "kernel" else "fixed"
  if leaf == "kernel" and ("attn" in path or "mlp" in path):
    return "hidden"
  return "vector"


def layer_names(depth: int) -> list[str]:
  """embed, block_0 .. block_{depth-1}, head: one gradient norm each."""
  return ["embed", *(f"block_{i}" for i in range(depth)), "head"]


def _check(model_cfg: Any) -> str:
  """Validates the static options; returns the norm to use."""
  choices = {"model.ln_position": (model_cfg.ln_position, LN_POSITIONS),
             "model.positions": (model_cfg.positions, POSITIONS),
             "model.norm": (model_cfg.norm, ("layer", "rms", "none"))}
  for key, (value, valid) in choices.items():
    if value not in valid:
      raise ConfigError(f"config key '{key}' is {value!r}; valid: {', '.join(valid)}")
  width, heads = int(model_cfg.width), int(model_cfg.heads)
  if heads <= 0 or width % heads:
    raise ConfigError(f"config key 'model.width' ({width}) must be a multiple of "
                      f"'model.heads' ({heads})")
  if model_cfg.positions == "rotary" and (width // heads) % 2:
    raise ConfigError(f"rotary positions need an even head dimension; 'model.width' / "
                      f"'model.heads' = {width // heads}")
  if int(model_cfg.mlp_ratio) <= 0:
    raise ConfigError(f"config key 'model.mlp_ratio' must be positive, got {model_cfg.mlp_ratio}")
  return "layer" if model_cfg.norm == "none" else model_cfg.norm


def _build(model_cfg: Any, init_family: str, num_outputs: int, causal: bool, pool: str
           ) -> Model:
  norm = _check(model_cfg)
  INIT_FAMILIES.get(init_family)
  ACTIVATIONS.get(model_cfg.activation)
  vocab = int(model_cfg.get("vocab_size", 0)) or int(num_outputs)
  depth = int(model_cfg.depth)
  scaling = for_model(model_cfg)
  tied = bool(model_cfg.tied_embeddings) and pool == "none"
  if tied and not scaling.is_standard:
    raise ConfigError(f"config key 'model.parameterization' is '{scaling.name}' but the "
                      "head is tied to the input embedding, which it scales as an input "
                      "layer: set model.tied_embeddings=False")
  mult = scaling.multiplier
  # muP's attention 1/d (Yang et al. 2022, Sec. 4) relative to the base width's 1/sqrt(d)
  logit = scaling.ratio ** -0.5 if scaling.name == "mup" else 1.0
  module = Transformer(
    vocab_size=vocab, num_outputs=int(num_outputs), depth=depth, width=int(model_cfg.width),
    heads=int(model_cfg.heads), mlp_ratio=int(model_cfg.mlp_ratio),
    ln_position=model_cfg.ln_position, norm=norm, qk_norm=bool(model_cfg.qk_norm),
    tied_embeddings=bool(model_cfg.tied_embeddings), positions=model_cfg.positions,
    scale_residual=bool(model_cfg.scale_residual), causal=causal, pool=pool,
    activation=model_cfg.activation, use_bias=bool(model_cfg.use_bias),
    init_family=init_family, multipliers=(mult["hidden"], mult["output"], logit),
    readout_zero_init=bool(model_cfg.get("readout_zero_init", False)))
  # hidden_layers (): the residual stream carries the gradient past every block
  return Model(module=module, layer_names=layer_names(depth),
               scale_rule=transformer_scale_rule, probe_fn=None, kind_of=transformer_kind,
               scaling=None if scaling.is_standard else scaling)


@MODELS.register("transformer_lm")
def build_transformer_lm(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  """Decoder-only LM: causal, (B, T) tokens -> (B, T, num_outputs) next-token logits."""
  return _build(model_cfg, init_family, num_outputs, causal=True, pool="none")


@MODELS.register("transformer_classifier")
def build_transformer_classifier(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  """Encoder classifier: bidirectional, mean-pooled, (B, T) tokens -> (B, num_outputs)."""
  return _build(model_cfg, init_family, num_outputs, causal=False, pool="mean")
