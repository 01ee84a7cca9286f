"""Draws every figure and the report of a sweep folder from its saved results."""

from __future__ import annotations

import os

from gradlab import results
from gradlab.registry import ConfigError
from gradlab.report import lr_transfer as lr_transfer_report
from gradlab.report import optimizers, write_report
from gradlab.report import prediction as prediction_report
from gradlab.viz import (
  canvas,
  explorer,
  ln_depth,
  lr_summary,
  lr_transfer,
  maps,
  overlays,
  through_time,
)


def draw_all(workdir: str) -> dict[str, str]:
  """Writes regime_map.png, final_loss.png, report.md, index.html (the interactive
  explorer, `gradlab.viz.explorer`) and, for a sweep with an optimizer and a
  learning-rate axis, stable_lr.png; returns {name: path}. The maps carry the
  mean-field critical line (and trainable depth) where `gradlab.viz.overlays` applies."""
  meta = results.read_config(workdir)
  df = results.load(workdir)
  if df.empty:
    raise ConfigError(f"'{workdir}' holds no finished runs yet; nothing to draw")
  axes = list(meta.get("axes", []))
  figures: dict[str, str] = {}
  if axes:
    lines = overlays.lines_for_workdir(meta, axes, df)
    figures["regime map"] = canvas.save_figure(maps.regime_figure(df, axes, lines),
                                               os.path.join(workdir, "regime_map.png"))
    figures["final loss"] = canvas.save_figure(maps.final_loss_figure(df, axes, lines),
                                               os.path.join(workdir, "final_loss.png"))
  extra = prediction_report.report_section(df)
  if optimizers.applies(axes):
    figures["stable lr"] = lr_summary.stable_lr_plot(df, axes,
                                                     os.path.join(workdir, "stable_lr.png"))
    extra = optimizers.optimizer_section(df, axes) + "\n" + extra
  figures.update(ln_depth.draw(workdir, df, axes))  # depth x ln_position sweeps
  if lr_transfer_report.applies(axes):  # width x learning-rate sweeps
    figures.update(lr_transfer.draw(workdir, df, axes))
    extra = lr_transfer_report.transfer_section(df, axes) + "\n" + extra
  figures.update(through_time.draw(workdir, df))  # sweeps with the RNN probe
  rel = {name: os.path.basename(path) for name, path in figures.items()}
  figures["report"] = write_report(workdir, df, axes, rel, extra=extra)
  if axes:
    figures["explorer"] = explorer.write_index(workdir)  # reads report.md: after it
  return figures
