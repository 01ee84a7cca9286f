"""TensorBoard event files from gradlab's numbers, written with tensorboardX (no TensorFlow).

    write_run(diag, os.path.join(workdir, TENSORBOARD_DIR))            # experiments.train
    write_sweep_hparams(rows, axes, os.path.join(workdir, TENSORBOARD_DIR))  # sweep.tensorboard

Pure data -> files: `write_run` reads a one-run diagnostics dict (`gradlab.diagnose`,
as in diagnostics.json) and `write_sweep_hparams` a sweep's result rows; nothing here
trains or computes a diagnostic. Tags of a run (one event file):

- every logged step: ``loss``, ``grad_norm``, ``param_norm``, ``update_norm``,
  ``grad_norm/<layer>`` and ``update_ratio/<layer>`` (||update_l|| / ||W_l||), and the
  histogram ``grad_histogram/<layer>`` of the layer's gradient entries (where the
  diagnostics hold 'grad_histograms');
- every sharpness measurement: ``sharpness``, ``sharpness/preconditioned`` (Adam's
  chains), ``sharpness/threshold`` (the optimizer's, e.g. 2/lr) and
  ``sharpness/ratio_to_threshold`` (the trace the threshold applies to, over it);
- ``run/text_summary``: the regime, losses and notes as text.

A sweep writes the TensorBoard HParams plugin's summaries: at the root, the experiment
(every swept axis and ``regime`` as hyperparameters, `METRICS` as metrics); one folder
per run, ``run-<run_id>``, with its session (the run's axis values and its regime label)
and its metrics as scalars at step 0. Non-finite numbers are written as NaN.

Each event file has a fixed name (`EVENT_FILE`) and is written to a temporary name, then
renamed: rewriting replaces it whole, and a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from tensorboardX.proto import api_pb2, plugin_hparams_pb2
from tensorboardX.proto.event_pb2 import Event
from tensorboardX.proto.summary_pb2 import HistogramProto, Summary, SummaryMetadata
from tensorboardX.record_writer import RecordWriter
from tensorboardX.summary import text as text_summary

from gradlab.regimes import REGIME_ORDER

TENSORBOARD_DIR = "tensorboard"  # under a run's or a sweep's workdir
EVENT_FILE = "events.out.tfevents.gradlab"  # 'tfevents' in the name: TensorBoard reads it
RUN_PREFIX = "run-"  # a sweep run's folder: run-<run_id, 6 digits>
# The sweep's HParams metrics (result columns) with their descriptions.
METRICS: dict[str, str] = {
  "final_loss": "eval-slice loss after the last step",
  "test_accuracy": "test accuracy (absent without a test split)",
  "max_grad_norm": "largest finite gradient norm of the run",
  "regime_code": "the regime as its index in gradlab.regimes.REGIME_ORDER: "
                 + ", ".join(f"{i} = {r}" for i, r in enumerate(REGIME_ORDER)),
}
_HPARAMS_PLUGIN = "hparams"
_DBL_MAX = float(np.finfo(np.float64).max)


def regime_code(regime: str) -> int:
  """The index of `regime` in `gradlab.regimes.REGIME_ORDER` (a ValueError if unknown)."""
  if regime not in REGIME_ORDER:
    raise ValueError(f"unknown regime '{regime}'; known: {', '.join(REGIME_ORDER)}")
  return REGIME_ORDER.index(regime)


def _number(value: Any) -> float:
  """A JSON number (None: a non-finite one) as a float, None as NaN."""
  return math.nan if value is None else float(value)


def _scalars(values: Mapping[str, Any]) -> Summary:
  return Summary(value=[Summary.Value(tag=tag, simple_value=_number(v))
                        for tag, v in values.items()])


# ---------------------------------------------------------------------------- one run


def histogram(counts: Sequence[int], edges: Sequence[float], minimum: Any, maximum: Any,
              total: Any, sum_squares: Any) -> HistogramProto | None:
  """A TensorBoard histogram of fixed-bin `counts` over `edges` (bucket b holds
  edges[b-1] < g <= edges[b]; len(counts) = len(edges) + 1, the first and last open),
  with the empty buckets at both ends left out (TensorBoard draws the first bucket from
  `minimum`, the last to `maximum`). None when every count is 0."""
  counts = np.asarray(counts, np.float64)
  kept = np.flatnonzero(counts)
  if not kept.size:
    return None
  limits = np.append(np.asarray(edges, np.float64), _DBL_MAX)
  first, last = kept[0], kept[-1] + 1
  return HistogramProto(min=_number(minimum), max=_number(maximum), num=float(counts.sum()),
                        sum=_number(total), sum_squares=_number(sum_squares),
                        bucket_limit=limits[first:last].tolist(),
                        bucket=counts[first:last].tolist())


def _curve_summaries(curves: Mapping[str, Any], hist: Mapping[str, Any] | None
                     ) -> Iterable[tuple[int, Summary]]:
  """(step, summary) of each logged step: the scalars and the gradient histograms."""
  layers = list(curves["layer_names"])
  for i, step in enumerate(curves["step"]):
    values = {k: curves[k][i] for k in ("loss", "grad_norm", "param_norm", "update_norm")}
    for j, name in enumerate(layers):
      values[f"grad_norm/{name}"] = curves["grad_norm_by_layer"][i][j]
      values[f"update_ratio/{name}"] = curves["update_ratio_by_layer"][i][j]
    summary = _scalars(values)
    if hist is not None:
      for j, name in enumerate(hist["layer_names"]):
        norm = curves["grad_norm_by_layer"][i][j]
        h = histogram(hist["counts"][i][j], hist["edges"], hist["min"][i][j],
                      hist["max"][i][j], hist["sum"][i][j],
                      None if norm is None else float(norm) ** 2)
        if h is not None:
          summary.value.add(tag=f"grad_histogram/{name}", histo=h)
    yield int(step), summary


def _sharpness_summaries(sharp: Mapping[str, Any]) -> Iterable[tuple[int, Summary]]:
  """(step, summary) of each sharpness measurement: the trace, the preconditioned one
  where measured, the threshold where the optimizer has one, and their ratio."""
  pre = sharp.get("preconditioned_sharpness") or []
  has_pre = any(v is not None for v in pre)
  threshold = sharp.get("threshold")
  ratio = sharp.get("ratio_to_threshold") or []
  for i, step in enumerate(sharp["step"]):
    values = {"sharpness": sharp["sharpness"][i]}
    if has_pre:
      values["sharpness/preconditioned"] = pre[i]
    if threshold is not None:
      values["sharpness/threshold"] = threshold
      values["sharpness/ratio_to_threshold"] = ratio[i] if i < len(ratio) else None
    yield int(step), _scalars(values)


def _run_text(diag: Mapping[str, Any]) -> str:
  """The run's regime, point, summary and notes as markdown."""
  lines = [f"**regime: {diag.get('summary', {}).get('regime')}**", ""]
  for section in ("point", "summary"):
    lines += [f"- {section}.{k}: {v}" for k, v in diag.get(section, {}).items()]
  lines += [f"- note: {n}" for n in diag.get("notes", [])]
  return "\n".join(lines)


def run_summaries(diag: Mapping[str, Any]) -> list[tuple[int, Summary]]:
  """Every (step, summary) `write_run` writes for a diagnostics dict (see the module
  docstring for the tags), in order of step."""
  out = [(0, text_summary("run", _run_text(diag)))]
  out += list(_curve_summaries(diag["curves"], diag.get("grad_histograms")))
  out += list(_sharpness_summaries(diag["sharpness"]))
  return sorted(out, key=lambda item: item[0])


def write_run(diag: Mapping[str, Any], logdir: str) -> str:
  """Writes one run's event file into `logdir` (replacing an earlier one) from its
  diagnostics dict (`gradlab.diagnose.diagnose`, or diagnostics.json read back);
  returns the file's path."""
  return write_events(os.path.join(logdir, EVENT_FILE), run_summaries(diag))


# --------------------------------------------------------------------------- a sweep


def _plugin_metadata(data: plugin_hparams_pb2.HParamsPluginData) -> SummaryMetadata:
  return SummaryMetadata(plugin_data=SummaryMetadata.PluginData(
    plugin_name=_HPARAMS_PLUGIN, content=data.SerializeToString()))


def _hparams_summary(tag: str, **data: Any) -> Summary:
  """A summary of the HParams plugin's data (experiment, session_start_info or
  session_end_info) under its tag."""
  meta = _plugin_metadata(plugin_hparams_pb2.HParamsPluginData(version=0, **data))
  return Summary(value=[Summary.Value(tag=f"_hparams_/{tag}", metadata=meta)])


def _plain(value: Any) -> bool | float | str | None:
  """An axis value as the HParams plugin holds it: bool, float or str (None: absent)."""
  if isinstance(value, bool | np.bool_):
    return bool(value)
  if isinstance(value, int | float | np.integer | np.floating):
    return float(value) if math.isfinite(float(value)) else None
  return None if value is None else str(value)


def _hparam_info(name: str, values: Sequence[Any]) -> api_pb2.HParamInfo:
  """The experiment's entry of one hyperparameter: its type from its `values`, and for
  names and booleans the domain of those values (numbers: the sessions' range)."""
  plain = [v for v in map(_plain, values) if v is not None]
  if plain and all(isinstance(v, float) for v in plain):
    return api_pb2.HParamInfo(name=name, type=api_pb2.DATA_TYPE_FLOAT64)
  booleans = bool(plain) and all(isinstance(v, bool) for v in plain)
  info = api_pb2.HParamInfo(
    name=name, type=api_pb2.DATA_TYPE_BOOL if booleans else api_pb2.DATA_TYPE_STRING)
  info.domain_discrete.extend(list(dict.fromkeys(plain if booleans else map(str, plain))))
  return info


def _domains(rows: pd.DataFrame, axes: Mapping[str, Sequence[Any]]) -> dict[str, list[Any]]:
  """Each hyperparameter's values: an axis's listed values and those in `rows`, the
  regime labels (`REGIME_ORDER`), and the replica index where rows have one."""
  out = {k: [*axes[k], *(rows[k].tolist() if k in rows else [])] for k in axes}
  out["regime"] = list(REGIME_ORDER)
  if "replica" in rows:
    out["replica"] = rows["replica"].tolist()
  return out


def experiment_summary(rows: pd.DataFrame, axes: Mapping[str, Sequence[Any]]) -> Summary:
  """The HParams experiment: the hyperparameters of `_domains` and `METRICS`."""
  experiment = api_pb2.Experiment(
    hparam_infos=[_hparam_info(k, v) for k, v in _domains(rows, axes).items()],
    metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=k), description=d)
                  for k, d in METRICS.items()])
  return _hparams_summary("experiment", experiment=experiment)


def session_summaries(row: Mapping[str, Any], axes: Sequence[str], wall_time: float
                      ) -> list[tuple[int, Summary]]:
  """(step, summary) of one run's HParams session: its start (axis values, regime,
  replica), its metrics as scalars (test_accuracy only where finite) and its end."""
  start = plugin_hparams_pb2.SessionStartInfo(start_time_secs=wall_time)
  for name in (*axes, "regime", *(["replica"] if "replica" in row else [])):
    value = _plain(row.get(name))
    if value is None:
      continue
    field = {bool: "bool_value", float: "number_value", str: "string_value"}[type(value)]
    setattr(start.hparams[name], field, value)
  metrics = {"final_loss": row["final_loss"], "max_grad_norm": row["max_grad_norm"],
             "regime_code": regime_code(str(row["regime"]))}
  accuracy = row.get("test_accuracy")
  if accuracy is not None and math.isfinite(float(accuracy)):
    metrics["test_accuracy"] = accuracy
  end = plugin_hparams_pb2.SessionEndInfo(status=api_pb2.STATUS_SUCCESS,
                                          end_time_secs=wall_time)
  return [(0, _hparams_summary("session_start_info", session_start_info=start)),
          (0, _scalars({k: float(v) for k, v in metrics.items()})),
          (0, _hparams_summary("session_end_info", session_end_info=end))]


def run_name(run_id: int) -> str:
  """The folder of sweep run `run_id` under the sweep's TensorBoard folder."""
  return f"{RUN_PREFIX}{int(run_id):06d}"


def write_sweep_hparams(rows: pd.DataFrame, axes: Mapping[str, Sequence[Any]], logdir: str
                        ) -> list[str]:
  """Writes the HParams experiment into `logdir` and one session per row into
  ``logdir/run-<run_id>`` (each replacing an earlier one); `axes`: the swept keys and
  their listed values (the domain of names and booleans). Returns the files written,
  the experiment's first."""
  now = time.time()
  paths = [write_events(os.path.join(logdir, EVENT_FILE), [(0, experiment_summary(rows, axes))])]
  for row in rows.to_dict("records"):
    path = os.path.join(logdir, run_name(row["run_id"]), EVENT_FILE)
    paths.append(write_events(path, session_summaries(row, list(axes), now)))
  return paths


# ------------------------------------------------------------------------ event files


def write_events(path: str, summaries: Iterable[tuple[int, Summary]]) -> str:
  """Writes an event file of (step, summary) pairs at `path`: to a temporary name in the
  same folder (which TensorBoard ignores), then renamed over `path`. Returns `path`."""
  directory = os.path.dirname(path) or "."
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".events", dir=directory)
  os.close(fd)
  try:
    writer = RecordWriter(tmp)
    try:
      now = time.time()
      writer.write(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
      for step, summary in summaries:
        writer.write(Event(wall_time=now, step=int(step), summary=summary).SerializeToString())
      writer.flush()
    finally:
      writer.close()
    os.replace(tmp, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  return path
