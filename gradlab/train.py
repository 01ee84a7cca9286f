"""One training run as ONE pure function of traced numbers.

    run = build_run(static_cfg, shapes)        # static structure closed over
    traj = run(hparams, key, data)             # hparams: dict of traced scalars

`hparams` holds every traced number (`gradlab.config.TRACED_KEYS`, by their last name:
sigma_w, sigma_b, learning_rate, ...). `data` is an unbatched `DataArrays` pytree passed
as an argument, not closed over, so large datasets never become compile-time constants;
the sweep engine maps `run` over hparams and keys with ``jax.vmap(run, (0, 0, None))``.

Models follow `gradlab.models.registry.Model` (docs/extending.md): mutable collections
other than params (BatchNorm's batch_stats) are carried through the scan per lane;
values a model sows as ``probe_<name>`` and its `probe_fn` are recorded at every logged
step in `Trajectory.model_probes`. A dataset's `gradlab.data.Task` may generate each
minibatch on device (`Task.sampler`) instead of sampling the train split.

The loop is `lax.scan` over blocks of `log_every` steps: the first step of a block is
probed (`gradlab.probes.measure`), the rest are plain. Every step updates a
`gradlab.probes.Tracker`, so non-finite and explosion steps are exact. A non-finite
value is data: it propagates through its own lane, is recorded, and never raises.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc
import optax

from gradlab import probes
from gradlab.config import TRACED_KEYS, flatten, parse_remedies, traced_values
from gradlab.data import AUGMENTATIONS, CLASSIFICATION, Task, sample_batch
from gradlab.diagnostics import hessian
from gradlab.losses import bound_loss
from gradlab.models import build_model, scale_params
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


class RunParts(NamedTuple):
  """One point's run in three pieces: start() -> (carry, initial_loss);
  advance(carry, first_block, n_blocks) -> (carry, outs); finish(carry, outs,
  initial_loss) -> Trajectory."""

  start: Callable[[], Any]
  advance: Callable[..., Any]
  finish: Callable[..., Any]


class Trajectory(NamedTuple):
  """What one run returns. Per-logged-step fields have a leading axis of n_logs."""

  step: jax.Array                # (n_logs,) int32: the logged steps
  loss: jax.Array                # (n_logs,) minibatch loss before the update
  grad_norm: jax.Array           # (n_logs,)
  grad_norm_by_layer: jax.Array  # (n_logs, n_layers)
  update_ratio_by_layer: jax.Array  # (n_logs, n_layers) ||update_l|| / ||params_l||
  param_norm: jax.Array          # (n_logs,)
  update_norm: jax.Array         # (n_logs,)
  finite: jax.Array              # (n_logs,) bool
  initial_loss: jax.Array        # eval-slice loss at init
  final_loss: jax.Array          # eval-slice loss after the last step, with the
                                 # optimizer's evaluation params (gradlab.optim.eval_params)
  test_loss: jax.Array           # NaN where there is no test split
  test_accuracy: jax.Array       # NaN where the loss has no accuracy
  test_metrics: dict[str, jax.Array]  # the loss's other metrics (e.g. mean_iou)
  model_probes: dict[str, jax.Array]  # (n_logs, ...) sown probe_<name> values and
                                      # probe_fn outputs at the logged steps
  skipped_steps: jax.Array       # steps a skip_nonfinite / loss_spike guard skipped
  sharpness_step: jax.Array      # (n_sharp,) steps where sharpness was measured
  sharpness: jax.Array           # (n_sharp,) top Hessian eigenvalue (minibatch loss)
  preconditioned_sharpness: jax.Array  # (n_sharp,) Adam-family chains; NaN otherwise
  tracker: probes.Tracker
  onset: probes.OnsetTracker     # explosion onset and first non-finite layer


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
              task: Task = CLASSIFICATION,
              ) -> Callable[[Mapping[str, jax.Array], jax.Array, DataArrays], Trajectory]:
  """Builds run(hparams, key, data) -> Trajectory for the static structure of `cfg`.

  `task` is the dataset's `gradlab.data.Task`: the loss ``train.loss='auto'`` resolves
  to, and the on-device minibatch generator of generated tasks. `batch_constraint`,
  when given, is applied to every minibatch (inputs and labels): the sweep engine passes
  a sharding constraint over the mesh's 'data' axis. `input_shape` is kept for callers;
  the init reads the shape and dtype of ``data.x_eval``.
  """
  del input_shape
  spec = build_model(cfg, num_classes)
  model, layer_names = spec.module, list(spec.layer_names)
  opt_name = cfg.optimizer.name
  make_tx = build_optimizer(opt_name, clip_enabled=cfg.optimizer.clip > 0,
                            remedies=parse_remedies(cfg.optimizer.remedies),
                            schedule=cfg.optimizer.schedule)
  steps, log_every = int(cfg.train.steps), int(cfg.train.log_every)
  n_logs, tail = divmod(steps, log_every)
  batch_size = int(cfg.data.batch_size)
  explode_factor = float(cfg.regimes.explode_factor)
  probed_layers = layer_names if cfg.train.layer_probes else []

  loss_spec, objective = bound_loss(cfg.train, task.loss)
  metrics_fn = loss_spec.metrics
  z_loss_on = float(cfg.train.z_loss) > 0
  augment = AUGMENTATIONS.get(cfg.data.augment)
  augment_on = cfg.data.augment != "none"
  layer_probes = bool(cfg.train.layer_probes)
  diag_every = int(cfg.diagnostics.every) // log_every  # in log blocks; 0 = off
  power_iters = int(cfg.diagnostics.power_iters)

  def apply(params, state, x, train: bool, collect: bool = False):
    """(outputs, new state, sown intermediates). Training applies update the state
    collections (BatchNorm statistics); `collect` also gathers sown values."""
    mutable = [*state] if train else []
    if collect:
      mutable.append("intermediates")
    variables = {"params": params, **state}
    if not mutable:
      return model.apply(variables, x, train=train), state, {}
    outputs, new = model.apply(variables, x, train=train, mutable=mutable)
    new = dict(new)
    sown = new.pop("intermediates", {})
    return outputs, ({**state, **new} if train else state), sown

  def total_loss(outputs, y, hp):
    loss = objective(outputs, y)
    if z_loss_on:
      loss = loss + hp["z_loss"] * z_loss(outputs, y)
    return loss

  def parts(hp: Mapping[str, jax.Array], key: jax.Array, data: DataArrays) -> RunParts:
    """start / advance / finish of one point's run (closures over its optimizer and keys);
    `run` is their composition, `train_checkpointed` calls them segment by segment."""
    init_key, data_key, diag_key = jax.random.split(key, 3)
    aug_key = jax.random.fold_in(diag_key, 0x7FFFFFFF)  # diag_key folds in steps only
    tx = make_tx(hp)

    def init():
      return init_variables(spec, init_key, data.x_eval[:1], hp)

    adam_like = _has_adam_state(jax.eval_shape(lambda: tx.init(init()[0])))

    def batch_at(step):
      k = jax.random.fold_in(data_key, step)
      if task.sampler is not None:
        xb, yb = task.sampler(k, batch_size)
      else:
        xb, yb = sample_batch(k, data.x_train, data.y_train, batch_size)
      if augment_on:
        xb = augment(jax.random.fold_in(aug_key, step), xb)
      if batch_constraint is not None:
        xb, yb = batch_constraint(xb), batch_constraint(yb)
      return xb, yb

    def loss_aux(params, state, xb, yb, collect: bool):
      outputs, new_state, sown = apply(params, state, xb, train=True, collect=collect)
      loss = total_loss(outputs, yb, hp)
      flags = jnp.stack([*(_sown_flag(sown, n) for n in layer_names[:-1]),
                         _all_finite(outputs)]) if collect else None
      return loss, (new_state, flags, _sown_probes(sown) if collect else {})

    def step_fn(carry, step, probe: bool):
      params, opt_state, tracker, onset, state = carry
      xb, yb = batch_at(step)
      collect = layer_probes or probe
      (loss, (new_state, act_finite, sown)), grads = jax.value_and_grad(
        loss_aux, has_aux=True)(params, state, xb, yb, collect)
      updates, opt_state = tx.update(grads, opt_state, params, value=loss)
      tracker = probes.tracker_update(tracker, step, loss, optax.global_norm(grads),
                                      explode_factor)
      if layer_probes:
        onset = probes.onset_update(onset, step, probes.layer_norms(grads, layer_names),
                                    act_finite, explode_factor)
      record = None
      if probe:
        record = probes.measure(loss, grads, params, updates, probed_layers)
        extra = dict(sown)
        if spec.probe_fn is not None:
          extra.update(spec.probe_fn({"params": params, **state}, xb, yb, objective))
        record["model_probes"] = extra
      return (optax.apply_updates(params, updates), opt_state, tracker, onset,
              new_state), record

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

    def sharpness(carry, b):
      """Top Hessian eigenvalue of the minibatch loss at block b's first step (and, for
      Adam-family chains, of the preconditioned Hessian P^-1/2 H P^-1/2)."""
      params, opt_state, state = carry[0], carry[1], carry[4]
      step = b * log_every
      xb, yb = batch_at(step)
      batch_loss = lambda p: total_loss(apply(p, state, xb, train=True)[0], yb, hp)
      k = jax.random.fold_in(diag_key, step)
      lam = _top_eigenvalue(lambda v: hessian.hvp(batch_loss, params, v), params, k,
                            power_iters)
      if adam_like:
        adam = hessian.find_adam_state(opt_state)
        # before Adam's first step nu = 0: use the preconditioner that step will use,
        # nu_hat = g^2 (P = |g| + eps), so the init-time value is defined.
        g = jax.grad(batch_loss)(params)
        pre = jax.tree_util.tree_map(
          lambda p_, g_: jnp.where(adam.count == 0, jnp.abs(g_) + hp["eps"], p_),
          hessian.adam_preconditioner(adam.nu, adam.count, hp["b2"], hp["eps"]), g)
        inv_sqrt = jax.tree_util.tree_map(jax.lax.rsqrt, pre)
        mul = lambda a, c: jax.tree_util.tree_map(jnp.multiply, a, c)
        lam_p = _top_eigenvalue(
          lambda v: mul(inv_sqrt, hessian.hvp(batch_loss, params, mul(inv_sqrt, v))), params,
          k, power_iters)
      else:
        lam_p = jnp.array(jnp.nan, jnp.float32)
      return jnp.stack([step.astype(jnp.float32), lam, lam_p])

    def diag_block(carry, d):
      sharp = sharpness(carry, d * diag_every)
      carry, out = jax.lax.scan(block, carry, d * diag_every + jnp.arange(diag_every))
      return carry, (out, sharp)

    def slice_loss(params, state):
      """The training objective on the eval slice, normalization layers using the
      slice's own statistics (as in training; nothing is updated)."""
      return total_loss(apply(params, state, data.x_eval, train=True)[0], data.y_eval, hp)

    def start():
      params, state = init()
      carry = (params, tx.init(params), probes.tracker_init(),
               probes.onset_init(len(layer_names)), state)
      return carry, slice_loss(params, state)

    def advance(carry, first_block: jax.Array | int, n_blocks: int):
      """Log blocks first_block .. first_block + n_blocks - 1; with diagnostics on,
      first_block must be a multiple of the diagnostics interval (in blocks)."""
      if diag_every:
        n_diag = n_blocks // diag_every
        carry, ((logged_steps, records), sharp) = jax.lax.scan(
          diag_block, carry, first_block // diag_every + jnp.arange(n_diag))
        logged_steps, records = jax.tree_util.tree_map(
          lambda x: x.reshape(-1, *x.shape[2:]), (logged_steps, records))
        carry, (rest_steps, rest) = jax.lax.scan(
          block, carry, first_block + n_diag * diag_every
          + jnp.arange(n_blocks - n_diag * diag_every))
        logged_steps, records = jax.tree_util.tree_map(
          lambda a, b: jnp.concatenate([a, b]), (logged_steps, records), (rest_steps, rest))
      else:
        carry, (logged_steps, records) = jax.lax.scan(block, carry,
                                                      first_block + jnp.arange(n_blocks))
        sharp = jnp.zeros((0, 3), jnp.float32)
      return carry, (logged_steps, records, sharp)

    def finish(carry, outs, initial_loss) -> Trajectory:
      logged_steps, records, sharp = outs
      records = dict(records)
      model_probes = records.pop("model_probes")
      carry = plain_steps(carry, jnp.asarray(n_logs * log_every), tail)
      params, opt_state, tracker, onset, state = carry
      evaluated = eval_params(opt_name, opt_state, params)  # Gadam: the iterate average
      final_loss = slice_loss(evaluated, state)
      test_loss, test_metrics = _evaluate(lambda x: apply(evaluated, state, x, False)[0],
                                          lambda o, y: total_loss(o, y, hp), metrics_fn,
                                          data.x_test, data.y_test)
      test_accuracy = test_metrics.pop("accuracy", jnp.array(jnp.nan, jnp.float32))
      return Trajectory(step=logged_steps.astype(jnp.int32), **records,
                        initial_loss=initial_loss, final_loss=final_loss,
                        test_loss=test_loss, test_accuracy=test_accuracy,
                        test_metrics=test_metrics, model_probes=model_probes,
                        skipped_steps=jnp.asarray(skip_count(opt_state), jnp.int32),
                        sharpness_step=sharp[:, 0].astype(jnp.int32),
                        sharpness=sharp[:, 1], preconditioned_sharpness=sharp[:, 2],
                        tracker=tracker, onset=onset)

    return RunParts(start, advance, finish)

  def run(hp: Mapping[str, jax.Array], key: jax.Array, data: DataArrays) -> Trajectory:
    p = parts(hp, key, data)
    carry, initial_loss = p.start()
    carry, outs = p.advance(carry, 0, n_logs)
    return p.finish(carry, outs, initial_loss)

  run.parts = parts  # type: ignore[attr-defined]
  run.n_logs = n_logs  # type: ignore[attr-defined]
  run.layer_names = layer_names  # type: ignore[attr-defined]
  run.diag_blocks = diag_every  # type: ignore[attr-defined]
  run.model = spec  # type: ignore[attr-defined]
  return run


def init_variables(spec: Any, init_key: jax.Array, example_x: jax.Array,
                   hp: Mapping[str, jax.Array]) -> tuple[Any, dict[str, Any]]:
  """(params, state) a run starts from: the model's unit-scale init on an example of the
  input's shape and dtype, params multiplied by the traced scales of `spec.scale_rule`;
  state is every other initialized collection (e.g. BatchNorm's batch_stats)."""
  variables = dict(spec.module.init(init_key, jnp.zeros_like(example_x)))
  params = scale_params(variables.pop("params"), hp, spec.scale_rule)
  return params, {k: v for k, v in variables.items() if k not in _NOT_STATE}


_NOT_STATE = ("intermediates", "perturbations")


def logits_of(outputs: Any) -> jax.Array:
  """The classification logits among a model's outputs (the array, or its 'logits')."""
  return outputs["logits"] if isinstance(outputs, Mapping) else outputs


def z_loss(outputs: Any, labels: jax.Array | None = None) -> jax.Array:
  """The z-loss of PaLM (Chowdhery et al. 2022, "PaLM", Sec. 5: "z_loss = 1e-4 *
  log^2 Z"): the mean over positions of log(Z)^2, Z = sum_k exp(logit_k), which pulls
  the softmax normalizer towards 1. Positions whose integer label is -1 (ignored by the
  cross-entropy) are left out. `train.z_loss` is its (traced) weight; final_loss and
  test_loss include the term, as the training objective does."""
  logits = logits_of(outputs)
  log_z = jax.nn.logsumexp(logits, axis=-1)
  if (labels is not None and jnp.issubdtype(labels.dtype, jnp.integer)
      and labels.shape == log_z.shape):
    mask = (labels >= 0).astype(log_z.dtype)
    return jnp.sum(log_z ** 2 * mask) / jnp.maximum(jnp.sum(mask), 1.0)
  return jnp.mean(log_z ** 2)


def _all_finite(outputs: Any) -> jax.Array:
  leaves = jax.tree_util.tree_leaves(outputs)
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def _sown_flag(sown: Mapping[str, Any], layer: str) -> jax.Array:
  """Whether the pre-activation the model sowed as '<layer>_finite' (anywhere in its
  module tree) is finite; True where it sows none."""
  flags = [v for path, v in _sown_items(sown) if path[-1] == f"{layer}_finite"]
  return jnp.all(jnp.stack([jnp.all(jnp.asarray(f)) for f in flags])) if flags else (
    jnp.array(True))


def _sown_items(sown: Mapping[str, Any], prefix: tuple[str, ...] = ()):
  """(path, value) of every sown value, modules in natural order (block_2 before
  block_10), each sow's tuple of values in call order."""
  for key in sorted(sown, key=_natural_key):
    value = sown[key]
    if isinstance(value, Mapping):
      yield from _sown_items(value, (*prefix, key))
    else:
      for v in value:
        yield (*prefix, key), v


def _natural_key(name: str) -> list[Any]:
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(name))]


def _sown_probes(sown: Mapping[str, Any]) -> dict[str, jax.Array]:
  """Every sown 'probe_<name>' value, stacked into a vector per name (one entry per
  sow, in module order)."""
  out: dict[str, list[jax.Array]] = {}
  for path, v in _sown_items(sown):
    if path[-1].startswith("probe_"):
      out.setdefault(path[-1][len("probe_"):], []).append(jnp.asarray(v, jnp.float32))
  return {k: jnp.stack([jnp.ravel(x)[0] if x.size == 1 else jnp.max(x) for x in vs])
          for k, vs in out.items()}


def _top_eigenvalue(matvec, like, key: jax.Array, num_iters: int) -> jax.Array:
  """The largest (most positive) eigenvalue by power iteration. Power iteration finds
  the largest in MAGNITUDE, lam1; when lam1 < 0 a second pass on (H - lam1 I), whose
  largest-magnitude eigenvalue is lambda_max - lam1 >= 0, recovers lambda_max."""
  lam1, _ = hessian.power_iteration(matvec, like, key, num_iters)
  shifted = lambda v: jax.tree_util.tree_map(lambda a, b: a - lam1 * b, matvec(v), v)
  lam2, _ = hessian.power_iteration(shifted, like, jax.random.fold_in(key, 1), num_iters)
  return jnp.where(lam1 >= 0, lam1, lam2 + lam1)


def _has_adam_state(opt_state: Any) -> bool:
  try:
    hessian.find_adam_state(opt_state)
  except ValueError:
    return False
  return True


def _evaluate(forward, loss_fn, metrics_fn, x: jax.Array, y: jax.Array
              ) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Loss and metrics on a whole split (evaluation mode: normalization layers use their
  running statistics); NaN for an empty split."""
  if x.shape[0] == 0:
    x1, y1 = jnp.zeros((1, *x.shape[1:]), x.dtype), jnp.zeros((1, *y.shape[1:]), y.dtype)
    names = [] if metrics_fn is None else list(
      jax.eval_shape(lambda: metrics_fn(forward(x1), y1)))
    nan = jnp.array(jnp.nan, jnp.float32)
    return nan, {n: nan for n in names}
  outputs = forward(x)
  metrics = dict(metrics_fn(outputs, y)) if metrics_fn is not None else {}
  return loss_fn(outputs, y), {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def train_one(cfg: mlc.ConfigDict, dataset: Any) -> Trajectory:
  """Runs the single point `cfg` (no sweep axes applied) and returns its trajectory."""
  run = build_run(cfg, dataset.num_classes, tuple(dataset.x_train.shape[1:]),
                  task=dataset.task)
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  key = jax.random.PRNGKey(int(cfg.train.seed))
  return jax.jit(run)(hp, key, make_data_arrays(dataset, cfg.train.eval_size))
