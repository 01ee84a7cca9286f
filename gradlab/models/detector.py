"""'detector': a one-stage, one-level FCOS detector (Tian et al. 2019, "FCOS: Fully
Convolutional One-Stage Object Detection") on the plain conv trunk of `gradlab.models.cnn`.

- Trunk: ``model.depth`` 'SAME' convolutions of ``model.width`` channels, ``model.
  downsample`` of them with stride 2 (so the feature map's stride is 2^downsample: 8 by
  default), ``model.norm`` and ``model.activation`` after each, as the 'cnn' family.
- Heads, shared by every location (FCOS Fig. 2 with one pyramid level and no FPN): a
  class tower and a box tower of ``model.head_depth`` 3x3 convolutions each (width
  channels, the trunk's norm and activation; FCOS uses 4 with GroupNorm), then 3x3
  convolutions to K class logits (``readout``, from the class tower), 4 box distances
  (``box_head``) and one centerness logit (``centerness_head``), both from the box tower
  (where FCOS's later version puts centerness).
- Class logits: the convolution plus the constant log(pi / (1 - pi)), pi =
  ``model.prior_prob`` (0.01): RetinaNet's prior (Lin et al. 2017, Sec. 4.1), which
  FCOS keeps, so that at init every location scores about pi and the many negatives do
  not swamp the focal loss. RetinaNet puts it in the bias's initial value; here it is a
  constant beside a bias that starts at 0 x sigma_b, so the traced scales do not
  rescale it.
- Box distances (l, t, r, b) in pixels = stride x softplus(output). FCOS uses
  exp(s x) with a learned s per level, its later version stride x relu(x). Softplus is
  positive, like both, but grows linearly, so a run whose head output blows up has a
  large box, not an overflow (the loss, not the parametrization, decides where L2
  explodes), and unlike relu it has a gradient for negative outputs.
- Centerness (FCOS Sec. 3.3) is always on: the 'detection' loss trains it and mAP ranks
  by sigmoid(class) x sigmoid(centerness).

Outputs ``{'logits': (B, H', W', K), 'ltrb': (B, H', W', 4), 'centerness': (B, H', W'),
'points': (B, H', W', 2)}``; ``points`` are the (x, y) pixel centres of the feature
cells, ((j + 1/2) W / W', (i + 1/2) H / H'), which the loss assigns targets to. Layer
names: ``conv_*`` (the trunk, the hidden layers), ``cls_tower_*``, ``box_tower_*``,
``box_head``, ``centerness_head``, ``readout``. Unit-scale kernels from
``init.family``; the default scale rule (every kernel x sigma_w, every bias x sigma_b).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from gradlab.config import register_keys
from gradlab.models.activations import ACTIVATIONS
from gradlab.models.cnn import ConvUnit, _Trunk, conv_layer_names, trunk_kwargs
from gradlab.models.init import INIT_FAMILIES, unit_bias_init
from gradlab.models.registry import MODELS, Model
from gradlab.registry import ConfigError

DETECTOR_KEYS: dict[str, Any] = register_keys("model", dict(
  head_depth=1,      # 3x3 convs in each of the class and box towers (FCOS: 4)
  prior_prob=0.01,   # pi: class logits start near log(pi / (1 - pi)) (RetinaNet)
), family="detector", non_negative=("head_depth",), unit_interval=("prior_prob",))


class Detector(_Trunk):
  """Trunk, two towers, and the class / box / centerness heads (module docstring)."""

  head_depth: int = 1
  prior_prob: float = 0.01

  def head(self, features: int, name: str) -> nn.Conv:
    return nn.Conv(features, (3, 3), padding="SAME", use_bias=self.use_bias,
                   kernel_init=INIT_FAMILIES.get(self.init_family), bias_init=unit_bias_init,
                   name=name)

  def tower(self, h: jax.Array, name: str, train: bool) -> jax.Array:
    act = ACTIVATIONS.get(self.activation)
    for i in range(self.head_depth):
      h = ConvUnit(self.width, 3, 1, self.norm, self.use_bias, self.init_family,
                   name=f"{name}_{i}")(h, train)
      self.sow("intermediates", f"{name}_{i}_finite", jnp.all(jnp.isfinite(h)))
      h = act(h)
    return h

  @nn.compact
  def __call__(self, x: jax.Array, train: bool = False) -> dict[str, jax.Array]:
    h = self.trunk(x, train)
    (n, height, width), (fh, fw) = x.shape[:3], h.shape[1:3]
    stride = jnp.array([width / fw, height / fh, width / fw, height / fh], h.dtype)
    cls, reg = self.tower(h, "cls_tower", train), self.tower(h, "box_tower", train)
    prior = math.log(self.prior_prob / (1 - self.prior_prob))
    xs, ys = (jnp.arange(fw) + 0.5) * width / fw, (jnp.arange(fh) + 0.5) * height / fh
    points = jnp.stack(jnp.meshgrid(xs, ys, indexing="xy"), -1).astype(h.dtype)
    return {"logits": self.head(self.num_outputs, "readout")(cls) + prior,
            "ltrb": stride * jax.nn.softplus(self.head(4, "box_head")(reg)),
            "centerness": self.head(1, "centerness_head")(reg)[..., 0],
            "points": jnp.broadcast_to(points, (n, fh, fw, 2))}


@MODELS.register("detector")
def build_detector(model_cfg: Any, init_family: str, num_outputs: int) -> Model:
  """The 'detector' of `model_cfg` (the cnn keys, plus head_depth and prior_prob)."""
  kwargs = trunk_kwargs(model_cfg, init_family, num_outputs)
  if kwargs["conv_dims"] != 2:
    raise ConfigError(f"model 'detector' takes images (model.conv_dims=2), got "
                      f"model.conv_dims={kwargs['conv_dims']}")
  prior = float(model_cfg.get("prior_prob", 0.01))
  if not 0 < prior < 1:
    raise ConfigError(f"config key 'model.prior_prob' must be in (0, 1), got {prior}")
  depth = int(model_cfg.get("head_depth", 1))
  convs = conv_layer_names(int(model_cfg.depth))
  towers = [f"{t}_{i}" for t in ("cls_tower", "box_tower") for i in range(depth)]
  return Model(Detector(**kwargs, head_depth=depth, prior_prob=prior),
               [*convs, *towers, "box_head", "centerness_head", "readout"],
               hidden_layers=tuple(convs))
