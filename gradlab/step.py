"""The pieces of one run, as module-level functions a test can call alone.

A run's parts come in two kinds:

- `Static`: what the config fixes at build time (the model, the objective, the optimizer
  builder, the layer names, the batch size, the log and diagnostics intervals, the
  task's sampler, the augmentation, the batch constraint). `make_static` reads it from
  a config; one `Static` serves every lane of a group.
- `Lane`: what one point's run traces (its hparams, its optimizer built from them, its
  keys and its data). `make_lane` derives the keys from the point's key exactly as every
  run does: ``init_key, data_key, diag_key = split(key, 3)``; minibatch ``s`` draws from
  ``fold_in(data_key, s)``, its augmentation from ``fold_in(fold_in(diag_key,
  0x7FFFFFFF), s)``, the sharpness at step ``s`` from ``fold_in(diag_key, s)``.

The functions take ``(static, lane, ...)`` first and are bound with `functools.partial`
where a scan needs a body: `train_step` (plain or probed), `log_block` (a probed step,
then ``log_every - 1`` plain ones), `block_sharpness`, `advance` (the scan over log
blocks) and `slice_loss` (`gradlab.evaluation` has the test evaluation).
`gradlab.train` assembles them into a `Run`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax

import gradlab.ctc  # noqa: F401  (registers the 'ctc' loss)
import gradlab.detection  # noqa: F401  (registers the 'detection' loss)
from gradlab import probes
from gradlab.config import parse_remedies
from gradlab.data import AUGMENTATIONS, Task, sample_batch
from gradlab.diagnostics import hessian
from gradlab.losses import Metrics, bound_loss, z_loss
from gradlab.losses import resolve as resolve_loss
from gradlab.models import build_model
from gradlab.models.parameterization import with_layer_rates
from gradlab.optim import build_optimizer
from gradlab.optim.fused import build_fused
from gradlab.optim.guards import loss_scale_of
from gradlab.precision import cast_floats, compute_dtype
from gradlab.prediction import ADAM_PRECONDITIONED, CATAPULT_MAX


class DataArrays(NamedTuple):
  """On-device arrays one run reads. x_eval/y_eval: a fixed slice of the train split."""

  x_train: jax.Array
  y_train: jax.Array
  x_eval: jax.Array
  y_eval: jax.Array
  x_test: jax.Array
  y_test: jax.Array


class Static(NamedTuple):
  """The static parts of a run (closed over; one per group of equal structure)."""

  spec: Any                      # the gradlab.models.Model (module, layer names, ...)
  layer_names: tuple[str, ...]
  probed_layers: tuple[str, ...]  # layer_names, or () without train.layer_probes
  opt_name: str
  make_tx: Callable[[Mapping[str, jax.Array]], optax.GradientTransformation]
  objective: Callable[[Any, jax.Array], jax.Array]  # (outputs, labels) -> loss
  metrics: Metrics | None
  z_loss_on: bool
  n_logs: int
  tail: int                      # plain steps after the last log block
  log_every: int
  batch_size: int
  explode_factor: float
  track_rule: probes.TrackRule   # the regime trackers' thresholds (regimes.*)
  layer_probes: bool
  diag_every: int                # sharpness interval in log blocks; 0 = off
  power_iters: int               # the power iteration's maximum iterations
  power_tol: float               # ... and its relative tolerance (diagnostics.power_tol)
  initial_sharpness: bool        # measure at start (`measures_initial_sharpness`)
  adam_preconditioned: bool      # the chain's state is Adam's second moment
  sampler: Callable[[jax.Array, int], tuple[jax.Array, jax.Array]] | None
  augment: Callable[[jax.Array, jax.Array], jax.Array] | None  # None: data.augment='none'
  batch_constraint: Callable[[jax.Array], jax.Array] | None
  compute_dtype: Any = jnp.float32  # train.precision (gradlab.precision)
  grad_histograms: bool = False  # diagnostics.grad_histograms (`probes.grad_histogram`)


class Lane(NamedTuple):
  """The traced parts of one point's run: its hparams, optimizer, keys and data."""

  hp: Mapping[str, jax.Array]
  tx: optax.GradientTransformation
  init_key: jax.Array
  data_key: jax.Array
  diag_key: jax.Array
  aug_key: jax.Array
  data: DataArrays


class Carry(NamedTuple):
  """The training state the scan carries from step to step."""

  params: Any
  opt_state: Any
  tracker: probes.Tracker
  onset: probes.OnsetTracker
  state: dict[str, Any]          # model collections other than params (batch_stats)
  initial_sharpness: jax.Array | None  # (1, SHARP_COLUMNS): the step-0 sharpness row
                                 # measured at start (diagnostics.initial, every = 0);
                                 # None otherwise (no zero-size leaf for checkpoints)


def make_static(cfg: mlc.ConfigDict, num_classes: int,
                batch_constraint: Callable[[jax.Array], jax.Array] | None,
                task: Task, fused: tuple[str, ...] = ()) -> Static:
  """The static parts of `cfg`'s runs (see `gradlab.train.build_run`); with `fused`
  optimizer names, the optimizer is `gradlab.optim.fused.build_fused` of them (each
  lane picks by ``hp['opt_index']``)."""
  spec = build_model(cfg, num_classes)
  layer_names = tuple(spec.layer_names)
  steps, log_every = int(cfg.train.steps), int(cfg.train.log_every)
  n_logs, tail = divmod(steps, log_every)
  loss_spec, objective = bound_loss(cfg.train, task.loss)
  return Static(
    spec=spec, layer_names=layer_names,
    probed_layers=layer_names if cfg.train.layer_probes else (),
    opt_name=cfg.optimizer.name,
    make_tx=with_layer_rates((build_fused if fused else build_optimizer)(
      fused or cfg.optimizer.name, clip_enabled=cfg.optimizer.clip > 0,
      remedies=parse_remedies(cfg.optimizer.remedies), schedule=cfg.optimizer.schedule),
      cfg, spec.kind_of),
    objective=objective, metrics=loss_spec.metrics, z_loss_on=float(cfg.train.z_loss) > 0,
    n_logs=n_logs, tail=tail, log_every=log_every, batch_size=int(cfg.data.batch_size),
    explode_factor=float(cfg.regimes.explode_factor),
    track_rule=probes.track_rule(cfg.regimes, steps, full_batch=int(cfg.data.batch_size) == 0),
    layer_probes=bool(cfg.train.layer_probes),
    diag_every=int(cfg.diagnostics.every) // log_every,
    power_iters=int(cfg.diagnostics.power_iters),
    power_tol=float(cfg.diagnostics.power_tol),
    initial_sharpness=measures_initial_sharpness(cfg, task),
    adam_preconditioned=cfg.optimizer.name in ADAM_PRECONDITIONED, sampler=task.sampler,
    augment=AUGMENTATIONS.get(cfg.data.augment) if cfg.data.augment != "none" else None,
    batch_constraint=batch_constraint, compute_dtype=compute_dtype(cfg.train.precision),
    grad_histograms=bool(cfg.diagnostics.grad_histograms))


def measures_initial_sharpness(cfg: mlc.ConfigDict, task: Task) -> bool:
  """Whether runs measure the sharpness once at start: with ``diagnostics.every`` 0,
  ``diagnostics.initial`` 'on', or 'auto' where the prediction reads it (the resolved
  loss has a catapult window: `gradlab.prediction.CATAPULT_MAX`)."""
  mode = cfg.diagnostics.initial
  if int(cfg.diagnostics.every) or mode == "off":
    return False
  return mode == "on" or resolve_loss(cfg.train.loss, task.loss) in CATAPULT_MAX


def make_lane(static: Static, hp: Mapping[str, jax.Array], key: jax.Array,
              data: DataArrays) -> Lane:
  """One point's traced parts: its optimizer and the keys its run derives from `key`."""
  init_key, data_key, diag_key = jax.random.split(key, 3)
  aug_key = jax.random.fold_in(diag_key, 0x7FFFFFFF)  # diag_key folds in steps only
  return Lane(hp, static.make_tx(hp), init_key, data_key, diag_key, aug_key, data)


def apply_model(static: Static, params: Any, state: dict[str, Any], x: jax.Array,
                train: bool, collect: bool = False) -> tuple[Any, dict[str, Any], Any]:
  """(outputs, new state, sown intermediates). Training applies update the state
  collections (BatchNorm statistics); `collect` also gathers sown values. The model
  computes in ``train.precision`` (params and inputs cast; outputs back to float32)."""
  if static.compute_dtype != jnp.float32:
    params, x = cast_floats(params, static.compute_dtype), cast_floats(x, static.compute_dtype)
    outputs, new_state, sown = apply_model(static._replace(compute_dtype=jnp.float32), params,
                                           state, x, train, collect)
    return cast_floats(outputs, jnp.float32), new_state, sown
  mutable = [*state] if train else []
  if collect:
    mutable.append("intermediates")
  variables = {"params": params, **state}
  if not mutable:
    return static.spec.module.apply(variables, x, train=train), state, {}
  outputs, new = static.spec.module.apply(variables, x, train=train, mutable=mutable)
  new = dict(new)
  sown = new.pop("intermediates", {})
  return outputs, ({**state, **new} if train else state), sown


def objective(static: Static, hp: Mapping[str, jax.Array], outputs: Any, y: jax.Array
              ) -> jax.Array:
  """The training objective: the bound loss, plus hp['z_loss'] * z-loss when it is on."""
  loss = static.objective(outputs, y)
  if static.z_loss_on:
    loss = loss + hp["z_loss"] * z_loss(outputs, y)
  return loss


def batch_at(static: Static, lane: Lane, step: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The minibatch of `step`: the task's generated batch or a sample of the train split,
  augmented and constrained as configured."""
  k = jax.random.fold_in(lane.data_key, step)
  if static.sampler is not None:
    xb, yb = static.sampler(k, static.batch_size)
  else:
    xb, yb = sample_batch(k, lane.data.x_train, lane.data.y_train, static.batch_size)
  if static.augment is not None:
    xb = static.augment(jax.random.fold_in(lane.aug_key, step), xb)
  if static.batch_constraint is not None:
    xb, yb = static.batch_constraint(xb), static.batch_constraint(yb)
  return xb, yb


def _loss_aux(static: Static, lane: Lane, params: Any, state: dict[str, Any],
              xb: jax.Array, yb: jax.Array, collect: bool, scale: jax.Array | None
              ) -> tuple[jax.Array, Any]:
  """The minibatch loss times `scale` (loss scaling; None: 1) and (the loss, new state,
  per-layer activation finite flags, sown probes); flags and probes only when `collect`."""
  outputs, new_state, sown = apply_model(static, params, state, xb, train=True,
                                         collect=collect)
  loss = objective(static, lane.hp, outputs, yb)
  flags = jnp.stack([*(probes.sown_flag(sown, n) for n in static.layer_names[:-1]),
                     probes.all_finite(outputs)]) if collect else None
  aux = (loss, new_state, flags, probes.sown_probes(sown) if collect else {})
  return (loss if scale is None else loss * scale), aux


def train_step(static: Static, lane: Lane, carry: Carry, step: jax.Array,
               probe: bool | jax.Array) -> tuple[Carry, dict[str, Any] | None]:
  """One optimizer step at `step`: (new carry, the probe record or None). Every step
  updates the tracker (and, with layer probes, the onset tracker); a probed step also
  records `gradlab.probes.measure` and the model's probes at the params before the
  update.

  `probe` is a Python bool (probed or plain, two programs) or a traced scalar bool that
  is the same in every lane (a scan index; `log_block` passes ``i == 0``): then one
  program serves both, the record is computed under a `jax.lax.cond` that stays a real
  branch under vmap, and a step that does not probe returns a record of zeros."""
  params, opt_state, tracker, onset, state = carry[:5]
  xb, yb = batch_at(static, lane, step)
  collect = static.layer_probes or probe is not False
  scale = loss_scale_of(opt_state)  # the loss_scale remedy's; None without it
  (_, (loss, new_state, act_finite, sown)), grads = jax.value_and_grad(
    functools.partial(_loss_aux, static, lane), has_aux=True)(params, state, xb, yb, collect,
                                                              scale)
  if scale is not None:
    grads = jax.tree.map(lambda g: g / scale, grads)
  updates, opt_state = lane.tx.update(grads, opt_state, params, value=loss)
  grad_norms = probes.norms(grads, static.probed_layers)  # once: tracker, onset, record
  tracker = probes.tracker_update(tracker, step, loss, grad_norms[0], static.track_rule)
  if static.layer_probes:
    onset = probes.onset_update(onset, step, grad_norms[1], act_finite, static.track_rule,
                                tracker.explosion_step == step)
  record = None
  if probe is not False:
    operands = (loss, grads, params, updates, sown, state, xb, yb, grad_norms)
    measured = functools.partial(_probe_record, static)
    if probe is True:
      record = measured(operands)
    else:
      record = jax.lax.cond(probe, measured, lambda ops: jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), jax.eval_shape(measured, ops)), operands)
  return Carry(optax.apply_updates(params, updates), opt_state, tracker, onset,
               new_state, carry.initial_sharpness), record


def _probe_record(static: Static, operands: tuple[Any, ...]) -> dict[str, Any]:
  """`gradlab.probes.measure` of a step, its model probes (sown values and the model's
  `probe_fn`) under 'model_probes', and with ``diagnostics.grad_histograms`` the
  per-layer gradient histograms (`gradlab.probes.grad_histogram`) under 'grad_histogram'."""
  loss, grads, params, updates, sown, state, xb, yb, grad_norms = operands
  record = probes.measure(loss, grads, params, updates, static.probed_layers, grad_norms)
  if static.grad_histograms:
    record["grad_histogram"] = probes.grad_histogram(grads, static.layer_names)
  extra = dict(sown)
  if static.spec.probe_fn is not None:
    extra.update(static.spec.probe_fn({"params": params, **state}, xb, yb, static.objective))
  record["model_probes"] = extra
  return record


def plain_steps(static: Static, lane: Lane, carry: Carry, first: jax.Array, count: int
                ) -> Carry:
  """`count` plain steps from step `first` (a scan; none when count is 0)."""
  if count == 0:
    return carry
  carry, _ = jax.lax.scan(functools.partial(train_step, static, lane, probe=False), carry,
                          first + jnp.arange(count))
  return carry


def log_block(static: Static, lane: Lane, carry: Carry, b: jax.Array
              ) -> tuple[Carry, tuple[jax.Array, dict[str, Any]]]:
  """Log block b: log_every steps from b * log_every, the first one probed. One step
  program serves the whole block (`train_step` with a traced ``probe``), so the step is
  compiled once, not once probed and once plain."""
  first = b * static.log_every

  def body(c: Carry, i: jax.Array) -> tuple[Carry, dict[str, Any]]:
    return train_step(static, lane, c, first + i, probe=i == 0)

  carry, records = jax.lax.scan(body, carry, jnp.arange(static.log_every))
  return carry, (first, jax.tree.map(lambda x: x[0], records))


def _batch_loss(static: Static, lane: Lane, state: dict[str, Any], xb: jax.Array,
                yb: jax.Array, params: Any) -> jax.Array:
  return objective(static, lane.hp, apply_model(static, params, state, xb, train=True)[0], yb)


# The columns of a sharpness row (Trajectory.sharpness* fields, in this order).
SHARP_COLUMNS = ("sharpness_step", "sharpness", "preconditioned_sharpness", "sharpness_iters",
                 "sharpness_converged", "preconditioned_sharpness_iters",
                 "preconditioned_sharpness_converged")


def block_sharpness(static: Static, lane: Lane, carry: Carry, b: jax.Array) -> jax.Array:
  """A row of `SHARP_COLUMNS` (float32) of the minibatch loss at block b's first step:
  the step, the sharpness and the preconditioned sharpness (NaN unless the chain's state
  is Adam's: `static.adam_preconditioned`), each estimate's iterations and convergence
  flag (`gradlab.diagnostics.hessian.sharpness`, up to ``diagnostics.power_iters``
  iterations, stopping at relative change ``diagnostics.power_tol``)."""
  step = jnp.asarray(b * static.log_every)
  xb, yb = batch_at(static, lane, step)
  batch_loss = functools.partial(_batch_loss, static, lane, carry.state, xb, yb)
  k = jax.random.fold_in(lane.diag_key, step)
  s = hessian.sharpness(batch_loss, carry.params, carry.opt_state, k, static.power_iters,
                        lane.hp["eps"], lane.hp["b2"], lane.hp["b1"], static.power_tol,
                        adam=static.adam_preconditioned)
  return jnp.stack([jnp.asarray(x, jnp.float32) for x in (
    step, s.value, s.preconditioned, s.iters, s.converged, s.preconditioned_iters,
    s.preconditioned_converged)])


def initial_sharpness(static: Static, lane: Lane, carry: Carry) -> jax.Array | None:
  """The (1, SHARP_COLUMNS) step-0 row when `static.initial_sharpness` (diagnostics off
  but ``diagnostics.initial`` on: the init-time prediction reads it), else None."""
  if not static.initial_sharpness:
    return None
  return block_sharpness(static, lane, carry, jnp.asarray(0))[None]


def _diag_block(static: Static, lane: Lane, carry: Carry, d: jax.Array) -> tuple[Carry, Any]:
  """The sharpness at diagnostics block d, then its diag_every log blocks."""
  sharp = block_sharpness(static, lane, carry, d * static.diag_every)
  carry, out = jax.lax.scan(functools.partial(log_block, static, lane), carry,
                            d * static.diag_every + jnp.arange(static.diag_every))
  return carry, (out, sharp)


def advance(static: Static, lane: Lane, carry: Carry, first_block: jax.Array | int,
            n_blocks: int) -> tuple[Carry, tuple[jax.Array, dict[str, Any], jax.Array]]:
  """Log blocks first_block .. first_block + n_blocks - 1: (carry, (logged steps,
  records, sharpness rows)); with diagnostics on, first_block must be a multiple of the
  diagnostics interval (in blocks)."""
  block = functools.partial(log_block, static, lane)
  diag_every = static.diag_every
  if not diag_every:
    carry, (logged_steps, records) = jax.lax.scan(block, carry,
                                                  first_block + jnp.arange(n_blocks))
    return carry, (logged_steps, records, jnp.zeros((0, len(SHARP_COLUMNS)), jnp.float32))
  n_diag = n_blocks // diag_every
  carry, ((logged_steps, records), sharp) = jax.lax.scan(
    functools.partial(_diag_block, static, lane), carry,
    first_block // diag_every + jnp.arange(n_diag))
  logged_steps, records = jax.tree_util.tree_map(
    lambda x: x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]), (logged_steps, records))
  carry, (rest_steps, rest) = jax.lax.scan(
    block, carry, first_block + n_diag * diag_every
    + jnp.arange(n_blocks - n_diag * diag_every))
  logged_steps, records = jax.tree_util.tree_map(
    lambda a, b: jnp.concatenate([a, b]), (logged_steps, records), (rest_steps, rest))
  return carry, (logged_steps, records, sharp)


def slice_loss(static: Static, lane: Lane, params: Any, state: dict[str, Any]) -> jax.Array:
  """The training objective on the eval slice, normalization layers using the
  slice's own statistics (as in training; nothing is updated)."""
  outputs = apply_model(static, params, state, lane.data.x_eval, train=True)[0]
  return objective(static, lane.hp, outputs, lane.data.y_eval)
