"""One training run as ONE pure function of traced numbers.

    built = build_run(static_cfg, num_classes)  # a Run: static structure closed over
    traj = built.run(hparams, key, data)        # hparams: dict of traced scalars

`hparams` holds every traced number (`gradlab.defaults.TRACED_KEYS`, by their last name:
sigma_w, sigma_b, learning_rate, ...). `data` is an unbatched `DataArrays` pytree passed
as an argument, not closed over, so large datasets never become compile-time constants;
the sweep engine maps `run` over hparams and keys with ``jax.vmap(built.run, (0, 0, None))``.

Models follow `gradlab.models.registry.Model` (docs/extending.md): mutable collections
other than params (BatchNorm's batch_stats) are carried through the scan per lane;
values a model sows as ``probe_<name>`` and its `probe_fn` are recorded at every logged
step in `Trajectory.model_probes`. A dataset's `gradlab.data.Task` may generate each
minibatch on device (`Task.sampler`) instead of sampling the train split.

The loop is `lax.scan` over blocks of `log_every` steps: the first step of a block is
probed (`gradlab.probes.measure`), the rest are plain. Every step updates a
`gradlab.probes.Tracker`, so non-finite and explosion steps are exact. A non-finite
value is data: it propagates through its own lane, is recorded, and never raises.
The step, the probed step, the sharpness and the evaluation are module-level functions
of `gradlab.step`, bound here with `functools.partial`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections as mlc

from gradlab import evaluation, probes
from gradlab import step as step_lib
from gradlab.compile_options import run_options
from gradlab.config import flatten, traced_values
from gradlab.data import CLASSIFICATION, Task
from gradlab.defaults import TRACED_KEYS
from gradlab.losses import resolve as resolve_loss
from gradlab.models import Model, scale_params
from gradlab.models.parameterization import scale_init
from gradlab.optim import eval_params, resolve_point, skip_count
from gradlab.optim.guards import loss_scale_of
from gradlab.step import Carry, DataArrays, Lane, Static

HPARAM_NAMES: tuple[str, ...] = tuple(k.split(".")[-1] for k in TRACED_KEYS)

__all__ = ["HPARAM_NAMES", "DataArrays", "Run", "RunParts", "Trajectory", "build_run",
           "hparams_from_config", "init_variables", "make_data_arrays", "train_one"]


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
  skipped_steps: jax.Array       # steps a skip_nonfinite / loss_spike / loss_scale guard
                                 # skipped
  loss_scale: jax.Array          # the loss_scale remedy's final scale; NaN without it
  sharpness_step: jax.Array      # (n_sharp,) steps where sharpness was measured
  sharpness: jax.Array           # (n_sharp,) top Hessian eigenvalue (minibatch loss)
  preconditioned_sharpness: jax.Array  # (n_sharp,) Adam chains (P = Adam's, with the
                                       # (1 - b1^(t+1)) factor); NaN otherwise
  sharpness_iters: jax.Array     # (n_sharp,) int32 power iterations the sharpness used
  sharpness_converged: jax.Array  # (n_sharp,) bool: reached diagnostics.power_tol
  preconditioned_sharpness_iters: jax.Array      # (n_sharp,) the same for the
  preconditioned_sharpness_converged: jax.Array  # preconditioned one (0 / False: none)
  tracker: probes.Tracker
  onset: probes.OnsetTracker     # explosion onset and first non-finite layer
  grad_histogram: probes.GradHistogram | None = None  # (n_logs, n_layers, ...) per-layer
                                 # gradient histograms at the logged steps with
                                 # diagnostics.grad_histograms; None without


class Run(NamedTuple):
  """What `build_run` returns: the run and what callers read beside it."""

  run: Callable[[Mapping[str, jax.Array], jax.Array, DataArrays], Trajectory]
  parts: Callable[[Mapping[str, jax.Array], jax.Array, DataArrays], RunParts]
  n_logs: int                    # logged steps (log blocks) per run
  layer_names: list[str]         # the model's probed layers, in order
  diag_blocks: int               # diagnostics interval in log blocks (0 = off)
  model: Model                   # the model spec (gradlab.models.Model)
  loss: str = ""                 # the resolved `gradlab.losses` name ('auto' -> the task's)


def hparams_from_config(cfg: mlc.ConfigDict) -> dict[str, float]:
  """The traced numbers of one config, by short name; unset optimizer numbers take the
  optimizer's paper default, else the shared one (`gradlab.optim.resolve_point`)."""
  return traced_values(resolve_point(flatten(cfg))[0], TRACED_KEYS)


def make_data_arrays(dataset: Any, eval_size: int) -> DataArrays:
  """The on-device arrays of `dataset`: the eval slice is its first `eval_size` training
  examples (all of them when eval_size <= 0); an absent test split is empty."""
  x_test = dataset.x_test if dataset.x_test is not None else dataset.x_train[:0]
  y_test = dataset.y_test if dataset.y_test is not None else dataset.y_train[:0]
  n_eval = min(int(eval_size), len(dataset.x_train)) if eval_size > 0 else len(dataset.x_train)
  return DataArrays(*(jnp.asarray(a) for a in (
    dataset.x_train, dataset.y_train, dataset.x_train[:n_eval], dataset.y_train[:n_eval],
    x_test, y_test)))


def build_run(cfg: mlc.ConfigDict, num_classes: int,
              batch_constraint: Callable[[jax.Array], jax.Array] | None = None,
              task: Task = CLASSIFICATION, fused: tuple[str, ...] = ()) -> Run:
  """Builds the `Run` of the static structure of `cfg`: ``run(hparams, key, data) ->
  Trajectory`` and its parts.

  `task` is the dataset's `gradlab.data.Task`: the loss ``train.loss='auto'`` resolves
  to, and the on-device minibatch generator of generated tasks. `batch_constraint`,
  when given, is applied to every minibatch (inputs and labels): the sweep engine passes
  a sharding constraint over the mesh's 'data' axis. The init reads the shape and dtype
  of ``data.x_eval``. `fused`: optimizer names whose chains the run holds, each lane
  picking its own by ``hparams['opt_index']`` (``sweep.fuse_optimizers``,
  `gradlab.optim.fused`).
  """
  static = step_lib.make_static(cfg, num_classes, batch_constraint, task, fused)
  return Run(run=functools.partial(run_point, static),
             parts=functools.partial(run_parts, static), n_logs=static.n_logs,
             layer_names=list(static.layer_names), diag_blocks=static.diag_every,
             model=static.spec, loss=resolve_loss(cfg.train.loss, task.loss))


def run_parts(static: Static, hp: Mapping[str, jax.Array], key: jax.Array,
              data: DataArrays) -> RunParts:
  """start / advance / finish of one point's run (bound to its optimizer and keys);
  `run_point` is their composition, `train_checkpointed` calls them segment by segment."""
  lane = step_lib.make_lane(static, hp, key, data)
  return RunParts(functools.partial(start, static, lane),
                  functools.partial(step_lib.advance, static, lane),
                  functools.partial(finish, static, lane))


def run_point(static: Static, hp: Mapping[str, jax.Array], key: jax.Array,
              data: DataArrays) -> Trajectory:
  """One point's whole run: start, every log block, finish."""
  p = run_parts(static, hp, key, data)
  carry, initial_loss = p.start()
  carry, outs = p.advance(carry, 0, static.n_logs)
  return p.finish(carry, outs, initial_loss)


def start(static: Static, lane: Lane) -> tuple[Carry, jax.Array]:
  """The initial carry and the eval-slice loss at init; the carry holds the step-0
  sharpness row when ``diagnostics.initial`` is on and ``diagnostics.every`` is 0."""
  params, state = init_variables(static.spec, lane.init_key, lane.data.x_eval[:1], lane.hp)
  initial_loss = step_lib.slice_loss(static, lane, params, state)
  carry = Carry(params, lane.tx.init(params), probes.tracker_init(initial_loss),
                probes.onset_init(len(static.layer_names)), state, None)
  carry = carry._replace(initial_sharpness=step_lib.initial_sharpness(static, lane, carry))
  return carry, initial_loss


def finish(static: Static, lane: Lane, carry: Carry, outs: Any, initial_loss: jax.Array
           ) -> Trajectory:
  """The tail's plain steps, then the evaluations, into a `Trajectory`."""
  logged_steps, records, sharp = outs
  records = dict(records)
  model_probes = records.pop("model_probes")
  carry = step_lib.plain_steps(static, lane, carry,
                               jnp.asarray(static.n_logs * static.log_every), static.tail)
  params, opt_state, tracker, onset, state = carry[:5]
  if carry.initial_sharpness is not None:  # step 0, measured at start
    sharp = jnp.concatenate([carry.initial_sharpness, sharp])
  evaluated = eval_params(static.opt_name, opt_state, params)  # Gadam: the iterate average
  state = evaluation.eval_state(static, lane, evaluated, state,  # SWA's BatchNorm update
                              jnp.asarray(static.n_logs * static.log_every + static.tail))
  final_loss = step_lib.slice_loss(static, lane, evaluated, state)
  test_loss, test_metrics = evaluation.evaluate(static, lane, evaluated, state)
  test_accuracy = test_metrics.pop("accuracy", jnp.array(jnp.nan, jnp.float32))
  return Trajectory(step=logged_steps.astype(jnp.int32), **records,
                    initial_loss=initial_loss, final_loss=final_loss,
                    test_loss=test_loss, test_accuracy=test_accuracy,
                    test_metrics=test_metrics, model_probes=model_probes,
                    skipped_steps=jnp.asarray(skip_count(opt_state), jnp.int32),
                    loss_scale=jnp.asarray(_nan_if_none(loss_scale_of(opt_state)),
                                           jnp.float32),
                    sharpness_step=sharp[:, 0].astype(jnp.int32),
                    sharpness=sharp[:, 1], preconditioned_sharpness=sharp[:, 2],
                    sharpness_iters=sharp[:, 3].astype(jnp.int32),
                    sharpness_converged=sharp[:, 4] > 0,
                    preconditioned_sharpness_iters=sharp[:, 5].astype(jnp.int32),
                    preconditioned_sharpness_converged=sharp[:, 6] > 0,
                    tracker=tracker, onset=onset)


def _nan_if_none(value: jax.Array | None) -> Any:
  return jnp.nan if value is None else value


def init_variables(spec: Model, init_key: jax.Array, example_x: jax.Array,
                   hp: Mapping[str, jax.Array]) -> tuple[Any, dict[str, Any]]:
  """(params, state) a run starts from: the model's unit-scale init on an example of the
  input's shape and dtype, params multiplied by the traced scales of `spec.scale_rule`;
  state is every other initialized collection (e.g. BatchNorm's batch_stats)."""
  variables = dict(spec.module.init(init_key, jnp.zeros_like(example_x)))
  params = scale_params(variables.pop("params"), hp, spec.scale_rule)
  if spec.scaling is not None:  # model.parameterization's width factors
    params = scale_init(params, spec.scaling, spec.kind_of)
  return params, {k: v for k, v in variables.items() if k not in _NOT_STATE}


_NOT_STATE = ("intermediates", "perturbations")


def train_one(cfg: mlc.ConfigDict, dataset: Any) -> Trajectory:
  """Runs the single point `cfg` (no sweep axes applied) and returns its trajectory."""
  built = build_run(cfg, dataset.num_classes, task=dataset.task)
  hp = {k: jnp.asarray(v, jnp.float32) for k, v in hparams_from_config(cfg).items()}
  key = jax.random.PRNGKey(int(cfg.train.seed))
  return jax.jit(built.run, compiler_options=run_options(cfg))(
    hp, key, make_data_arrays(dataset, cfg.train.eval_size))
