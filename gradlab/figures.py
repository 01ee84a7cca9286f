"""Draws every figure and the report of a sweep folder from its saved results."""

from __future__ import annotations

import os

from gradlab import (
  compare,
  ln_depth,
  overlays,
  plots,
  prediction,
  report,
  results,
  through_time_plot,
)
from gradlab.registry import ConfigError


def draw_all(workdir: str) -> dict[str, str]:
  """Writes regime_map.png, final_loss.png, report.md and, for a sweep with an optimizer
  and a learning-rate axis, stable_lr.png; returns {name: path}. The maps carry the
  mean-field critical line (and trainable depth) where `gradlab.overlays` applies."""
  meta = results.read_config(workdir)
  df = results.load(workdir)
  if df.empty:
    raise ConfigError(f"'{workdir}' holds no finished runs yet; nothing to draw")
  axes = list(meta.get("axes", []))
  figures: dict[str, str] = {}
  if axes:
    lines = overlays.lines_for_workdir(meta, axes, df)
    figures["regime map"] = plots.save_figure(plots.regime_figure(df, axes, lines),
                                              os.path.join(workdir, "regime_map.png"))
    figures["final loss"] = plots.save_figure(plots.final_loss_figure(df, axes, lines),
                                              os.path.join(workdir, "final_loss.png"))
  extra = prediction.report_section(df)
  if compare.applies(axes):
    figures["stable lr"] = compare.stable_lr_plot(df, axes, os.path.join(workdir, "stable_lr.png"))
    extra = compare.optimizer_section(df, axes) + "\n" + extra
  figures.update(ln_depth.draw(workdir, df, axes))  # depth x ln_position sweeps
  figures.update(through_time_plot.draw(workdir, df))  # sweeps with the RNN probe
  rel = {name: os.path.basename(path) for name, path in figures.items()}
  figures["report"] = report.write_report(workdir, df, axes, rel, extra=extra)
  return figures
