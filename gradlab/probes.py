"""Per-step measurements, cheap enough to run inside the training scan.

Three pieces, each a pure function over pytrees:

- `measure`: the probe record of one logged step (loss, global and per-layer gradient
  norm, parameter norm, update norm, a finite flag); `all_finite` (the one copy, which
  the optimizer guards use too).
- `Tracker`: a small functional state updated EVERY step (not only logged ones), so the
  first non-finite step and the explosion step are exact, not rounded to `log_every`;
  it carries what `gradlab.regimes.classify` needs (its rules are stated there) under
  the thresholds of a `TrackRule`.
- sown values: what a model sows into its 'intermediates' collection, read back as
  per-layer finite flags (`sown_flag`) and ``probe_<name>`` vectors (`sown_probes`).
- `grad_histogram`: per-layer histograms of a logged step's gradient entries over fixed
  signed log-spaced bins (``diagnostics.grad_histograms``; TensorBoard's histograms).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradlab import regimes
from gradlab.diagnostics import onset as onset_lib


def all_finite(tree: Any) -> jax.Array:
  """True when every entry of every leaf of `tree` is finite (a scalar bool)."""
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def norms(tree: Any, layer_names: Sequence[str]) -> tuple[jax.Array, jax.Array]:
  """(the L2 norm of the whole tree, the norm of each named top-level sub-tree in
  `layer_names` order: shape (L,)), leaf by leaf. (Tried: one raveled vector and a
  segment sum, fewer XLA kernels; it compiled no faster and ran a third slower on the
  CPU.)"""
  by_layer = (jnp.stack([optax.global_norm(tree[name]) for name in layer_names])
              if layer_names else jnp.zeros((0,), jnp.float32))
  return optax.global_norm(tree), by_layer


def measure(loss: jax.Array, grads: Any, params: Any, updates: Any,
            layer_names: Sequence[str],
            grad_norms: tuple[jax.Array, jax.Array] | None = None) -> dict[str, jax.Array]:
  """The probe record of one step; `params` are the parameters before the update.

  update_ratio_by_layer is ||update_l|| / ||params_l||, the per-layer step size relative
  to the weights (empty when `layer_names` is). `grad_norms`: ``norms(grads,
  layer_names)`` when the caller has them already.
  """
  grad_norm, grad_by_layer = grad_norms or norms(grads, layer_names)
  param_norm, param_by_layer = norms(params, layer_names)
  update_norm, update_by_layer = norms(updates, layer_names)
  return {
    "loss": loss,
    "grad_norm": grad_norm,
    "grad_norm_by_layer": grad_by_layer,
    "update_ratio_by_layer": update_by_layer / jnp.maximum(param_by_layer, 1e-30),
    "param_norm": param_norm,
    "update_norm": update_norm,
    "finite": jnp.isfinite(loss) & all_finite(grads),
  }


# Bucket edges of `grad_histogram`: 0 and +-10^(k/4) for k = -40..24 (1e-10 .. 1e6, four
# per decade), as float32 (the values compared in the scan). Bucket b holds the entries
# g with edges[b-1] < g <= edges[b]; the first bucket is (-inf, edges[0]], the last
# (edges[-1], inf). Read-only.
GRAD_HIST_PER_DECADE = 4
GRAD_HIST_DECADES = (-10, 6)
_MAGNITUDES = 10.0 ** (np.arange(GRAD_HIST_DECADES[0] * GRAD_HIST_PER_DECADE,
                                 GRAD_HIST_DECADES[1] * GRAD_HIST_PER_DECADE + 1)
                       / GRAD_HIST_PER_DECADE)
GRAD_HIST_EDGES: np.ndarray = np.concatenate([-_MAGNITUDES[::-1], [0.0], _MAGNITUDES]
                                             ).astype(np.float32)
GRAD_HIST_EDGES.setflags(write=False)


class GradHistogram(NamedTuple):
  """Per-layer histograms of one step's gradient entries (all leaves of each named
  top-level sub-tree) over `GRAD_HIST_EDGES`; NaN entries are left out, so each row of
  `counts` sums to the layer's parameter count less its NaN entries. With a leading
  n_logs axis in `gradlab.train.Trajectory.grad_histogram`."""

  counts: jax.Array  # (L, len(GRAD_HIST_EDGES) + 1) int32
  min: jax.Array     # (L,) smallest non-NaN entry (inf: none)
  max: jax.Array     # (L,) largest non-NaN entry (-inf: none)
  sum: jax.Array     # (L,) sum of the non-NaN entries


def grad_histogram(grads: Any, layer_names: Sequence[str]) -> GradHistogram:
  """The `GradHistogram` of `grads` per layer of `layer_names` (rows in that order)."""
  edges = jnp.asarray(GRAD_HIST_EDGES)
  rows = [_layer_histogram(grads[name], edges) for name in layer_names]
  if not rows:
    return GradHistogram(jnp.zeros((0, edges.shape[0] + 1), jnp.int32),
                         *(jnp.zeros((0,), jnp.float32) for _ in range(3)))
  return GradHistogram(*(jnp.stack(column) for column in zip(*rows, strict=True)))


def _layer_histogram(tree: Any, edges: jax.Array) -> tuple[jax.Array, ...]:
  """(counts, min, max, sum) of every entry of every leaf of `tree`, NaNs left out."""
  g = jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in jax.tree.leaves(tree)])
  kept = ~jnp.isnan(g)
  bucket = jnp.searchsorted(edges, g, side="left")  # edges[b-1] < g <= edges[b]
  counts = jnp.zeros(edges.shape[0] + 1, jnp.int32).at[bucket].add(kept.astype(jnp.int32))
  return (counts, jnp.min(jnp.where(kept, g, jnp.inf)), jnp.max(jnp.where(kept, g, -jnp.inf)),
          jnp.sum(jnp.where(kept, g, 0.0)))


OnsetTracker = onset_lib.OnsetTracker


class TrackRule(NamedTuple):
  """The static thresholds the trackers apply (`gradlab.regimes` states the rules):
  explode_factor and spike_factor (``regimes.*``), the baseline window [window_start,
  window_stop) of `gradlab.regimes.baseline_window`, and end_start, the first step of
  the final window (steps - window_stop); spike_steps, the consecutive steps the loss
  must stay above spike_factor x its reference (`gradlab.regimes.spike_steps`)."""

  explode_factor: float
  spike_factor: float
  window_start: int
  window_stop: int
  end_start: int
  spike_steps: int = regimes.MINIBATCH_SPIKE_STEPS


def track_rule(regimes_cfg: Any, steps: int, full_batch: bool = False) -> TrackRule:
  """The `TrackRule` of a config's ``regimes`` section for a run of `steps` steps
  (`full_batch`: the loss has no batch noise, one step above the factor is a spike)."""
  w0, w1 = regimes.baseline_window(steps, int(regimes_cfg.baseline_steps))
  return TrackRule(float(regimes_cfg.explode_factor), float(regimes_cfg.spike_factor), w0, w1,
                   int(steps) - w1, regimes.spike_steps(full_batch))


def onset_init(num_layers: int) -> OnsetTracker:
  return onset_lib.onset_tracker_init(num_layers)


def onset_update(state: OnsetTracker, step: jax.Array, grad_norm_by_layer: jax.Array,
                 activation_finite: jax.Array, rule: TrackRule, spiked: jax.Array
                 ) -> OnsetTracker:
  """Explosion onset and the first non-finite layer. The onset step is the run's spike
  (`spiked`: the `Tracker` set its explosion_step at this step), its layer the one whose
  gradient norm is largest against its own reference (its geometric mean over the
  baseline window, or before the window closes its largest norm so far:
  `gradlab.diagnostics.onset`). The non-finite layer, in the order things are computed:
  the lowest layer whose pre-activation is non-finite (the forward pass runs first); if
  every activation is finite, the highest layer whose gradient is non-finite
  (backpropagation reaches the top layers first)."""
  grad_bad = ~jnp.isfinite(grad_norm_by_layer)
  act_bad = ~activation_finite
  n = grad_bad.shape[0]
  layer = jnp.where(jnp.any(act_bad), jnp.argmax(act_bad), n - 1 - jnp.argmax(grad_bad[::-1]))
  any_bad = jnp.any(act_bad) | jnp.any(grad_bad)
  finite_by_layer = ~((jnp.arange(n) == layer) & any_bad)
  return onset_lib.onset_tracker_update(
    state, step, grad_norm_by_layer, rule.explode_factor, finite_by_layer=finite_by_layer,
    direction="forward", window=(rule.window_start, rule.window_stop), trigger=spiked)


class Tracker(NamedTuple):
  """Running summary of the per-step (minibatch) loss and gradient norm, the in-scan
  form of `gradlab.regimes.summarize` (the rules are stated there).

  first_nonfinite_step: first step whose loss or gradient norm is not finite (-1: none)
  explosion_step: first spike (-1: none): a step >= window_stop whose gradient norm
    exceeds explode_factor x baseline_grad_norm, or the second of two consecutive steps
    >= 1 whose losses exceed spike_factor x loss_reference (one step for full-batch runs)
  initial_grad_norm: gradient norm at step 0
  baseline_grad_norm: geometric mean of the finite gradient norms over the baseline
    window seen so far (the largest norm so far while none is)
  max_grad_norm: largest finite gradient norm seen
  final_grad_norm: gradient norm at the last step taken
  end_max_grad_norm: largest finite gradient norm over steps >= end_start (NaN: none)
  loss_reference: the larger of the eval-slice loss at init and the step-0 minibatch loss
  loss_high: whether the last step's loss exceeded spike_factor x loss_reference
  max_loss, max_loss_step: largest finite minibatch loss and its step
  log_sum, window_count: sum of log gradient norms over the window, and their number
  """

  first_nonfinite_step: jax.Array
  explosion_step: jax.Array
  initial_grad_norm: jax.Array
  baseline_grad_norm: jax.Array
  max_grad_norm: jax.Array
  final_grad_norm: jax.Array
  end_max_grad_norm: jax.Array
  loss_reference: jax.Array
  loss_high: jax.Array
  max_loss: jax.Array
  max_loss_step: jax.Array
  log_sum: jax.Array
  window_count: jax.Array


def tracker_init(initial_loss: Any = jnp.nan) -> Tracker:
  """An empty tracker; `initial_loss` (the eval-slice loss at init) is the loss spike's
  reference unless the step-0 minibatch loss is larger (NaN: that minibatch loss alone)."""
  minus_one = jnp.array(-1, jnp.int32)
  zero = jnp.array(0.0, jnp.float32)
  nan = jnp.array(jnp.nan, jnp.float32)
  return Tracker(minus_one, minus_one, zero, zero, zero, zero, nan,
                 jnp.asarray(initial_loss, jnp.float32), jnp.array(False), nan, minus_one,
                 zero, jnp.array(0, jnp.int32))


def tracker_update(state: Tracker, step: jax.Array, loss: jax.Array, grad_norm: jax.Array,
                   rule: TrackRule) -> Tracker:
  """Folds step `step` in (steps come in order from 0)."""
  f32 = jnp.float32
  loss, grad_norm = jnp.asarray(loss, f32), jnp.asarray(grad_norm, f32)
  step = jnp.asarray(step, jnp.int32)
  finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
  reference = jnp.where(step == 0, jnp.fmax(loss, state.loss_reference), state.loss_reference)
  max_norm = jnp.where(finite, jnp.maximum(state.max_grad_norm, grad_norm), state.max_grad_norm)
  in_window = finite & (step >= rule.window_start) & (step < rule.window_stop)
  log_sum = state.log_sum + jnp.where(in_window, jnp.log(jnp.maximum(grad_norm, 1e-30)), 0.0)
  count = state.window_count + in_window.astype(jnp.int32)
  baseline = jnp.where(count > 0, jnp.exp(log_sum / jnp.maximum(count, 1)), max_norm)
  high = finite & (step >= 1) & (loss > rule.spike_factor * reference)
  spiked = (finite & (step >= rule.window_stop) & (grad_norm > rule.explode_factor * baseline)
            ) | (high & (state.loss_high if rule.spike_steps > 1 else True))
  at_end = finite & (step >= rule.end_start)
  higher = finite & ~(loss <= state.max_loss)  # also replaces the initial NaN
  return Tracker(
    first_nonfinite_step=jnp.where((state.first_nonfinite_step < 0) & ~finite, step,
                                   state.first_nonfinite_step),
    explosion_step=jnp.where((state.explosion_step < 0) & spiked, step, state.explosion_step),
    initial_grad_norm=jnp.where(step == 0, grad_norm, state.initial_grad_norm),
    baseline_grad_norm=baseline.astype(f32), max_grad_norm=max_norm, final_grad_norm=grad_norm,
    end_max_grad_norm=jnp.where(at_end, jnp.fmax(state.end_max_grad_norm, grad_norm),
                                state.end_max_grad_norm),
    loss_reference=reference, loss_high=high, max_loss=jnp.where(higher, loss, state.max_loss),
    max_loss_step=jnp.where(higher, step, state.max_loss_step),
    log_sum=log_sum, window_count=count)


def sown_flag(sown: Mapping[str, Any], layer: str) -> jax.Array:
  """Whether the pre-activation the model sowed as '<layer>_finite' (anywhere in its
  module tree) is finite; True where it sows none."""
  flags = [v for path, v in sown_items(sown) if path[-1] == f"{layer}_finite"]
  return jnp.all(jnp.stack([jnp.all(jnp.asarray(f)) for f in flags])) if flags else (
    jnp.array(True))


def sown_items(sown: Mapping[str, Any], prefix: tuple[str, ...] = ()
               ) -> Iterator[tuple[tuple[str, ...], Any]]:
  """(path, value) of every sown value, modules in natural order (block_2 before
  block_10), each sow's tuple of values in call order."""
  for key in sorted(sown, key=natural_key):
    value = sown[key]
    if isinstance(value, Mapping):
      yield from sown_items(value, (*prefix, key))
    else:
      for v in value:
        yield (*prefix, key), v


def natural_key(name: str) -> list[Any]:
  """Sort key that orders the digit runs of a name as numbers ('block_2' < 'block_10')."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def sown_probes(sown: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Every sown 'probe_<name>' value, stacked into a vector per name (one entry per
  sow, in module order)."""
  out: dict[str, list[jax.Array]] = {}
  for path, v in sown_items(sown):
    if path[-1].startswith("probe_"):
      out.setdefault(path[-1][len("probe_"):], []).append(jnp.asarray(v, jnp.float32))
  return {k: jnp.stack([jnp.ravel(x)[0] if x.size == 1 else jnp.max(x) for x in vs])
          for k, vs in out.items()}
