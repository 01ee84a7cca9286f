"""Where and when a run blows up: the first exploding layer and the first non-finite one.

Two forms of the same rules:

- post hoc, over recorded arrays (rows = steps, columns = layers), e.g. a
  `Trajectory.grad_norm_by_layer` (rows are LOGGED steps: pass ``steps=traj.step`` to get
  step numbers instead of row indices): `explosion_onset`, `first_nonfinite`;
- in the training scan, exact to the step: the `OnsetTracker` state with
  ``onset_tracker_init(num_layers) -> OnsetTracker`` and
  ``onset_tracker_update(state, step, grad_norm_by_layer, explode_factor,
  finite_by_layer=None) -> OnsetTracker``, updated every step like
  `gradlab.probes.Tracker` (whose step-0 convention it shares).

Rules. Explosion: layer l has exploded at step s when its gradient norm is finite and
exceeds ``explode_factor`` times its own step-0 value; the onset is the earliest such
step, and its layer the one with the largest ratio g_l(s) / g_l(0) at that step (so ties
in time go to the layer that blew most). Non-finite: the earliest step at which any
layer's flag is False, and at that step the lowest-index non-finite layer
("forward": where a forward-pass blow-up starts; use activation flags, e.g.
`gradlab.diagnostics.signal.preactivation_finite`) or the highest ("backward": where a
backward-pass blow-up starts). All functions return -1 for "none" and are jittable and
vmappable over runs.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


def _ratios(g_SxL: jax.Array, g0_L: jax.Array) -> jax.Array:
  """g / g0, with g0 = 0 treated as "any growth is infinite"."""
  safe = jnp.where(g0_L > 0, g0_L, 1.0)
  return jnp.where(g0_L > 0, g_SxL / safe, jnp.where(g_SxL > 0, jnp.inf, 0.0))


def _check_direction(direction: str) -> None:
  if direction not in ("forward", "backward"):
    raise ValueError(f"unknown direction '{direction}'; known: backward, forward")


def explosion_onset(grad_norm_by_layer: jax.Array, explode_factor: float,
                    steps: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(step, layer) of the first explosion in a (steps, layers) array of gradient norms,
  int32 scalars, (-1, -1) if no layer ever passes explode_factor x its row-0 value.
  `steps` (rows,) maps rows to step numbers (default: the row index)."""
  g = jnp.asarray(grad_norm_by_layer)
  ratio = _ratios(g, g[0])
  exceeded = jnp.isfinite(g) & (ratio > explode_factor)
  any_row = jnp.any(exceeded, axis=1)
  row = jnp.argmax(any_row)
  layer = jnp.argmax(jnp.where(exceeded[row], ratio[row], -jnp.inf))
  found = jnp.any(any_row)
  step = row if steps is None else jnp.asarray(steps)[row]
  return (jnp.where(found, step, -1).astype(jnp.int32),
          jnp.where(found, layer, -1).astype(jnp.int32))


def _pick_layer(bad_L: jax.Array, direction: str) -> jax.Array:
  n = bad_L.shape[-1]
  return jnp.argmax(bad_L) if direction == "forward" else n - 1 - jnp.argmax(bad_L[::-1])


def first_nonfinite(finite_by_layer: jax.Array, steps: jax.Array | None = None,
                    direction: str = "forward") -> tuple[jax.Array, jax.Array]:
  """(step, layer) where per-layer finite flags (steps, layers) first go False: the first
  such row, and in it the lowest ("forward") or highest ("backward") False layer; int32
  scalars, (-1, -1) if every flag is True."""
  _check_direction(direction)
  bad = ~jnp.asarray(finite_by_layer, bool)
  any_row = jnp.any(bad, axis=1)
  row = jnp.argmax(any_row)
  found = jnp.any(any_row)
  step = row if steps is None else jnp.asarray(steps)[row]
  return (jnp.where(found, step, -1).astype(jnp.int32),
          jnp.where(found, _pick_layer(bad[row], direction), -1).astype(jnp.int32))


class OnsetTracker(NamedTuple):
  """In-scan state of `explosion_onset` and `first_nonfinite`, updated every step.

  initial_grad_norm_by_layer: (L,) the step-0 per-layer gradient norms
  onset_step, onset_layer: first explosion (-1: none)
  onset_ratio: g_l / g_l(0) of onset_layer at onset_step (0: none)
  nonfinite_step, nonfinite_layer: first non-finite flag (-1: none)
  """

  initial_grad_norm_by_layer: jax.Array
  onset_step: jax.Array
  onset_layer: jax.Array
  onset_ratio: jax.Array
  nonfinite_step: jax.Array
  nonfinite_layer: jax.Array


def onset_tracker_init(num_layers: int) -> OnsetTracker:
  minus_one = jnp.array(-1, jnp.int32)
  return OnsetTracker(jnp.zeros((num_layers,), jnp.float32), minus_one, minus_one,
                      jnp.array(0.0, jnp.float32), minus_one, minus_one)


def onset_tracker_update(state: OnsetTracker, step: jax.Array, grad_norm_by_layer: jax.Array,
                         explode_factor: float, finite_by_layer: jax.Array | None = None,
                         direction: str = "forward") -> OnsetTracker:
  """Folds one step in. `grad_norm_by_layer` (L,) are this step's per-layer gradient
  norms; `finite_by_layer` (L,) bool defaults to their finiteness. The step whose number
  is 0 sets the reference norms. Once found, an onset or non-finite record is kept."""
  _check_direction(direction)
  g = jnp.asarray(grad_norm_by_layer, jnp.float32)
  finite = jnp.isfinite(g) if finite_by_layer is None else jnp.asarray(finite_by_layer, bool)
  g0 = jnp.where(step == 0, g, state.initial_grad_norm_by_layer)
  ratio = _ratios(g, g0)
  exceeded = jnp.isfinite(g) & (ratio > explode_factor)
  new_onset = (state.onset_step < 0) & jnp.any(exceeded)
  layer = jnp.argmax(jnp.where(exceeded, ratio, -jnp.inf)).astype(jnp.int32)
  bad = ~finite
  new_bad = (state.nonfinite_step < 0) & jnp.any(bad)
  step = jnp.asarray(step, jnp.int32)
  return OnsetTracker(
    initial_grad_norm_by_layer=g0,
    onset_step=jnp.where(new_onset, step, state.onset_step),
    onset_layer=jnp.where(new_onset, layer, state.onset_layer),
    onset_ratio=jnp.where(new_onset, ratio[layer], state.onset_ratio).astype(jnp.float32),
    nonfinite_step=jnp.where(new_bad, step, state.nonfinite_step),
    nonfinite_layer=jnp.where(new_bad, _pick_layer(bad, direction).astype(jnp.int32),
                              state.nonfinite_layer),
  )


def onset_summary(state: OnsetTracker) -> dict[str, jax.Array]:
  """The tracker's findings as a flat dict (for results rows)."""
  return {"onset_step": state.onset_step, "onset_layer": state.onset_layer,
          "onset_ratio": state.onset_ratio, "nonfinite_step": state.nonfinite_step,
          "nonfinite_layer": state.nonfinite_layer}

