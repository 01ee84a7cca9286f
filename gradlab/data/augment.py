"""On-device data augmentation of a sampled minibatch, by name (``data.augment``).

Each augmentation is a pure function ``(key, x_BxHxWxC) -> x_BxHxWxC`` applied inside the
training scan after a minibatch is sampled, so it costs no host round trip and every
lane draws its own.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from gradlab.registry import ConfigError, Registry

Augmentation = Callable[[jax.Array, jax.Array], jax.Array]
AUGMENTATIONS: Registry[Augmentation] = Registry("augmentation")


@AUGMENTATIONS.register("none")
def no_augmentation(key: jax.Array, x: jax.Array) -> jax.Array:
  del key
  return x


def crop_padding(height: int) -> int:
  """Zero padding of the random crop: 4 pixels on a 32-pixel image, as in the CIFAR
  ResNet recipe (He et al. 2016, "Deep Residual Learning", Sec. 4.2), i.e. height / 8,
  at least one pixel."""
  return max(1, height // 8)


@AUGMENTATIONS.register("crop_flip")
def crop_flip(key: jax.Array, x_BxHxWxC: jax.Array) -> jax.Array:
  """A random crop of the zero-padded image (`crop_padding`) and a horizontal flip with
  probability 1/2, drawn independently per example. Inputs are standardized, so zero
  padding is the mean pixel."""
  if x_BxHxWxC.ndim != 4:
    raise ConfigError(f"data.augment='crop_flip' needs images (B, H, W, C); got inputs of "
                      f"shape {tuple(x_BxHxWxC.shape)}")
  b, h, w, c = x_BxHxWxC.shape
  pad = crop_padding(h)
  padded = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  k_dy, k_dx, k_flip = jax.random.split(key, 3)
  dy = jax.random.randint(k_dy, (b,), 0, 2 * pad + 1)
  dx = jax.random.randint(k_dx, (b,), 0, 2 * pad + 1)
  flip = jax.random.bernoulli(k_flip, 0.5, (b,))

  def one(img, y0, x0, f):
    crop = jax.lax.dynamic_slice(img, (y0, x0, 0), (h, w, c))
    return jnp.where(f, crop[:, ::-1], crop)

  return jax.vmap(one)(padded, dy, dx, flip)
