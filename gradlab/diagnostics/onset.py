"""Where and when a run blows up: the first exploding layer and the first non-finite one.

Two forms of the same rules:

- post hoc, over recorded arrays (rows = steps, columns = layers), e.g. a
  `Trajectory.grad_norm_by_layer` (rows are LOGGED steps: pass ``steps=traj.step`` to get
  step numbers instead of row indices): `explosion_onset`, `first_nonfinite`;
- in the training scan, exact to the step: the `OnsetTracker` state with
  ``onset_tracker_init(num_layers) -> OnsetTracker`` and
  ``onset_tracker_update(state, step, grad_norm_by_layer, explode_factor,
  finite_by_layer=None, window=(0, 1), trigger=None) -> OnsetTracker``, updated every
  step like `gradlab.probes.Tracker`.

Rules. Explosion (post hoc): layer l has exploded at step s when its gradient norm is
finite and exceeds ``explode_factor`` times its own row-0 value; the onset is the
earliest such step, and its layer the one with the largest ratio g_l(s) / g_l(0) at
that step (so ties in time go to the layer that blew most). In the scan, each layer is
compared with a REFERENCE instead of its step-0 norm (a layer whose gradient starts
vanishingly small would otherwise always "explode" first): the geometric mean of its
norms over a window [w0, w1) of steps (`gradlab.regimes.baseline_window`, the same
window as the run's gradient baseline), or, before the window closes, its largest norm
so far; the default window (0, 1) is the step-0 rule. In a training run the onset step
is the run's spike (`gradlab.regimes`: the `trigger`) and its layer the one with the
largest ratio to its reference there. Non-finite: the earliest step at which any
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
  """In-scan state of the onset rules, updated every step (see the module docstring).

  log_sum_by_layer, window_count_by_layer: (L,) sums of log gradient norms over the
    reference window, and how many finite steps they hold
  max_by_layer: (L,) each layer's largest finite gradient norm so far
  onset_step, onset_layer: first explosion (-1: none)
  onset_ratio: g_l / reference_l of onset_layer at onset_step (0: none)
  nonfinite_step, nonfinite_layer: first non-finite flag (-1: none)
  """

  log_sum_by_layer: jax.Array
  window_count_by_layer: jax.Array
  max_by_layer: jax.Array
  onset_step: jax.Array
  onset_layer: jax.Array
  onset_ratio: jax.Array
  nonfinite_step: jax.Array
  nonfinite_layer: jax.Array


def onset_tracker_init(num_layers: int) -> OnsetTracker:
  minus_one = jnp.array(-1, jnp.int32)
  zeros = jnp.zeros((num_layers,), jnp.float32)
  return OnsetTracker(zeros, jnp.zeros((num_layers,), jnp.int32), zeros, minus_one, minus_one,
                      jnp.array(0.0, jnp.float32), minus_one, minus_one)


def reference_norms(state: OnsetTracker, step: jax.Array, window_stop: int) -> jax.Array:
  """(L,) each layer's reference at `step`: from window_stop on, the geometric mean of its
  finite norms over the window; before (or with none), its largest norm so far."""
  count = state.window_count_by_layer
  geo = jnp.exp(state.log_sum_by_layer / jnp.maximum(count, 1))
  return jnp.where((step >= window_stop) & (count > 0), geo, state.max_by_layer)


def onset_tracker_update(state: OnsetTracker, step: jax.Array, grad_norm_by_layer: jax.Array,
                         explode_factor: float, finite_by_layer: jax.Array | None = None,
                         direction: str = "forward", window: tuple[int, int] = (0, 1),
                         trigger: jax.Array | None = None) -> OnsetTracker:
  """Folds one step in (steps in order from 0). `grad_norm_by_layer` (L,) are this
  step's per-layer gradient norms; `finite_by_layer` (L,) bool defaults to their
  finiteness. `window` = [w0, w1): the steps whose norms make the references (the default
  (0, 1) is the step-0 norm). Without `trigger`, the onset is the first step >= w1 at
  which a layer passes explode_factor x its reference; with it (a bool scalar: the run's
  spike, `gradlab.probes.Tracker`), the first step it is True. Either way the onset layer
  is the finite layer with the largest ratio to its reference. Once found, an onset or
  non-finite record is kept."""
  _check_direction(direction)
  w0, w1 = window
  g = jnp.asarray(grad_norm_by_layer, jnp.float32)
  step = jnp.asarray(step, jnp.int32)
  finite = jnp.isfinite(g) if finite_by_layer is None else jnp.asarray(finite_by_layer, bool)
  ratio = _ratios(g, reference_norms(state, step, w1))
  if trigger is None:
    candidates = jnp.isfinite(g) & (ratio > explode_factor) & (step >= w1)
    fire = jnp.any(candidates)
  else:
    candidates = jnp.isfinite(g)
    fire = jnp.asarray(trigger, bool) & jnp.any(candidates)
  new_onset = (state.onset_step < 0) & fire
  layer = jnp.argmax(jnp.where(candidates, ratio, -jnp.inf)).astype(jnp.int32)
  bad = ~finite
  new_bad = (state.nonfinite_step < 0) & jnp.any(bad)
  in_window = jnp.isfinite(g) & (step >= w0) & (step < w1)
  return OnsetTracker(
    log_sum_by_layer=state.log_sum_by_layer
    + jnp.where(in_window, jnp.log(jnp.maximum(g, 1e-30)), 0.0),
    window_count_by_layer=state.window_count_by_layer + in_window.astype(jnp.int32),
    max_by_layer=jnp.where(jnp.isfinite(g), jnp.maximum(state.max_by_layer, g),
                           state.max_by_layer),
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

