"""One training run as ONE pure function of traced numbers.

    run = build_run(static_cfg, shapes)        # static structure closed over
    traj = run(hparams, key, data)             # hparams: dict of traced scalars

`hparams` holds every traced number (`gradlab.config.TRACED_KEYS`, by their last name:
sigma_w, sigma_b, learning_rate, ...). `data` is an unbatched `DataArrays` pytree passed
as an argument, not closed over, so large datasets never become compile-time constants;
the sweep engine maps `run` over hparams and keys with ``jax.vmap(run, (0, 0, None))``.

The loop is `lax.scan` over blocks of `log_every` steps: the first step of a block is
probed (`gradlab.probes.measure`), the rest are plain. Every step updates a
`gradlab.probes.Tracker`, so non-finite and explosion steps are exact. A non-finite
value is data: it propagates through its own lane, is recorded, and never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax

from gradlab import probes
from gradlab.config import TRACED_KEYS, flatten, parse_remedies, traced_values
from gradlab.data import sample_batch
from gradlab.losses import LOSSES
from gradlab.models import MODELS, scale_params
from gradlab.optim import build_optimizer, eval_params, skip_count

HPARAM_NAMES: tuple[str, ...] = tuple(k.split(".")[-1] for k in TRACED_KEYS)


class DataArrays(NamedTuple):
  """On-device arrays one run reads. x_eval/y_eval: a fixed slice of the train split."""

  x_train: jax.Array
  y_train: jax.Array
  x_eval: jax.Array
  y_eval: jax.Array
  x_test: jax.Array
  y_test: jax.Array


class Trajectory(NamedTuple):
  """What one run returns. Per-logged-step fields have a leading axis of n_logs."""

  step: jax.Array                # (n_logs,) int32: the logged steps
  loss: jax.Array                # (n_logs,) minibatch loss before the update
  grad_norm: jax.Array           # (n_logs,)
  grad_norm_by_layer: jax.Array  # (n_logs, n_layers)
  param_norm: jax.Array          # (n_logs,)
  update_norm: jax.Array         # (n_logs,)
  finite: jax.Array              # (n_logs,) bool
  initial_loss: jax.Array        # eval-slice loss at init
  final_loss: jax.Array          # eval-slice loss after the last step, with the
                                 # optimizer's evaluation params (gradlab.optim.eval_params)
  test_loss: jax.Array           # NaN where there is no test split
  test_accuracy: jax.Array
  skipped_steps: jax.Array       # steps a skip_nonfinite / loss_spike guard skipped
  tracker: probes.Tracker


def hparams_from_config(cfg: mlc.ConfigDict) -> dict[str, float]:
  """The traced numbers of one config, by short name."""
  return traced_values(flatten(cfg))


def make_data_arrays(dataset: Any, eval_size: int) -> DataArrays:
  x_test = dataset.x_test if dataset.x_test is not None else dataset.x_train[:0]
  y_test = dataset.y_test if dataset.y_test is not None else dataset.y_train[:0]
  n_eval = min(int(eval_size), len(dataset.x_train)) if eval_size > 0 else len(dataset.x_train)
  return DataArrays(*(jnp.asarray(a) for a in (
    dataset.x_train, dataset.y_train, dataset.x_train[:n_eval], dataset.y_train[:n_eval],
    x_test, y_test)))


def build_run(cfg: mlc.ConfigDict, num_classes: int, input_shape: tuple[int, ...],
              batch_constraint: Callable[[jax.Array], jax.Array] | None = None,
              ) -> Callable[[Mapping[str, jax.Array], jax.Array, DataArrays], Trajectory]:
  """Builds run(hparams, key, data) -> Trajectory for the static structure of `cfg`.

  `batch_constraint`, when given, is applied to every sampled minibatch (inputs and
  labels): the sweep engine passes a sharding constraint over the mesh's 'data' axis.
  """
  model, layer_names = MODELS.get(cfg.model.name)(cfg.model, cfg.init.family, num_classes)
  opt_name = cfg.optimizer.name
  make_tx = build_optimizer(opt_name, clip_enabled=cfg.optimizer.clip > 0,
                            remedies=parse_remedies(cfg.optimizer.remedies),
                            schedule=cfg.optimizer.schedule)
  steps, log_every = int(cfg.train.steps), int(cfg.train.log_every)
  n_logs, tail = divmod(steps, log_every)
  batch_size = int(cfg.data.batch_size)
  explode_factor = float(cfg.regimes.explode_factor)
  probed_layers = layer_names if cfg.train.layer_probes else []

  objective = LOSSES.get(cfg.train.loss).fn

  def loss_fn(params, x, y):
    return objective(model.apply({"params": params}, x), y)

  def run(hp: Mapping[str, jax.Array], key: jax.Array, data: DataArrays) -> Trajectory:
    init_key, data_key = jax.random.split(key)
    dummy = jnp.zeros((1, *input_shape), jnp.float32)
    unit = model.init(init_key, dummy)["params"]
    params = scale_params(unit, hp["sigma_w"], hp["sigma_b"])
    tx = make_tx(hp)

    def step_fn(carry, step, probe: bool):
      params, opt_state, tracker = carry
      xb, yb = sample_batch(jax.random.fold_in(data_key, step), data.x_train, data.y_train,
                            batch_size)
      if batch_constraint is not None:
        xb, yb = batch_constraint(xb), batch_constraint(yb)
      loss, grads = jax.value_and_grad(loss_fn)(params, xb, yb)
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      tracker = probes.tracker_update(tracker, step, loss, optax.global_norm(grads),
                                      explode_factor)
      record = probes.measure(loss, grads, params, updates, probed_layers) if probe else None
      return (optax.apply_updates(params, updates), opt_state, tracker), record

    def plain_steps(carry, first: jax.Array, count: int):
      if count == 0:
        return carry
      carry, _ = jax.lax.scan(lambda c, s: step_fn(c, s, probe=False), carry,
                              first + jnp.arange(count))
      return carry

    def block(carry, b):
      first = b * log_every
      carry, record = step_fn(carry, first, probe=True)
      carry = plain_steps(carry, first + 1, log_every - 1)
      return carry, (first, record)

    carry = (params, tx.init(params), probes.tracker_init())
    initial_loss = loss_fn(params, data.x_eval, data.y_eval)
    carry, (logged_steps, records) = jax.lax.scan(block, carry, jnp.arange(n_logs))
    carry = plain_steps(carry, jnp.asarray(n_logs * log_every), tail)
    params, opt_state, tracker = carry
    evaluated = eval_params(opt_name, opt_state, params)  # Gadam: the iterate average
    final_loss = loss_fn(evaluated, data.x_eval, data.y_eval)
    test_loss, test_accuracy = _evaluate(model, objective, evaluated, data.x_test, data.y_test)
    return Trajectory(step=logged_steps.astype(jnp.int32), **records,
                      initial_loss=initial_loss, final_loss=final_loss, test_loss=test_loss,
                      test_accuracy=test_accuracy,
                      skipped_steps=jnp.asarray(skip_count(opt_state), jnp.int32),
                      tracker=tracker)

  return run


def _evaluate(model, objective, params, x: jax.Array, y: jax.Array
              ) -> tuple[jax.Array, jax.Array]:
  """Loss and accuracy on a whole split; NaN for an empty split."""
  if x.shape[0] == 0:
    nan = jnp.array(jnp.nan, jnp.float32)
    return nan, nan
  logits = model.apply({"params": params}, x)
  return objective(logits, y), jnp.mean(jnp.argmax(logits, -1) == y)


def train_one(cfg: mlc.ConfigDict, dataset: Any) -> Trajectory:
  """Runs the single point `cfg` (no sweep axes applied) and returns its trajectory."""
  run = build_run(cfg, dataset.num_classes, tuple(dataset.x_train.shape[1:]))
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  key = jax.random.PRNGKey(int(cfg.train.seed))
  return jax.jit(run)(hp, key, make_data_arrays(dataset, cfg.train.eval_size))
