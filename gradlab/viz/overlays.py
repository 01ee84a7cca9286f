"""The mean-field theory's lines over a sweep's regime and final-loss maps.

Where a sweep's model is a plain MLP (``model.name = 'mlp'``, no layer norm) with an
activation the theory knows (`gradlab.theory.MEAN_FIELD_ACTIVATIONS`) and ``init.sigma_w``
is one of the map's two axes, `map_lines` returns the lines to draw over each panel
(`gradlab.viz.maps.regime_figure`'s ``lines`` hook):

- the critical line, where chi_1 = 1 (Poole et al. 2016, "Exponential expressivity in
  deep neural networks through transient chaos", sec. 2; Schoenholz et al. 2017, "Deep
  information propagation", sec. 2): sigma_w* = sqrt(critical_sigma_w2(phi, sigma_b2) / g).
  A straight line across the other axis when that axis is one the line does not depend
  on (learning rate, optimizer, seed, ...); the curve sigma_w*(sigma_b) when the other
  axis is ``init.sigma_b``;
- the trainable depth, when the other axis is ``model.depth``: the curve
  depth = 6 xi_c(g sigma_w^2, sigma_b^2) against sigma_w (Schoenholz et al. 2017, sec. 6:
  a random network trains when its depth is below about 6 xi_c), beside the critical line.

g is the init family's hidden-layer variance gain
(`gradlab.diagnostics.mean_field.FAMILY_VARIANCE_GAIN`, where the scale conversions
live). Panel axes (``axes[2:]``) override the saved config's values, so a panel per
sigma_b or per activation gets its own line; an axis the line itself depends on
(activation, init family, model name, layer norm, use_bias) as the map's other axis
gets no line.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from gradlab.config import flatten
from gradlab.diagnostics.mean_field import critical_sigma_w, skip_reason, trainable_depth
from gradlab.panels import cell_edges, is_log_spaced
from gradlab.viz.maps import MapLine, PanelLines

SIGMA_W = "init.sigma_w"
SIGMA_B = "init.sigma_b"
DEPTH = "model.depth"
# Keys the critical line depends on besides sigma_b: as the map's other axis, no line.
_THEORY_KEYS = ("model.name", "model.activation", "model.layer_norm", "model.use_bias",
                "init.family")

CRITICAL_COLOR = "#1f4fff"
DEPTH_COLOR = "#e000e0"
CURVE_POINTS = 40
_OFF_THE_MAP = 1e9  # xi_c = inf on the critical line: draw the curve off the top


class _MapTheory(NamedTuple):
  """What the lines of every panel of one map share."""

  base: dict[str, Any]  # the saved config, flattened
  other: str | None  # the map axis that is not sigma_w
  df: pd.DataFrame
  w_edges: np.ndarray  # outer cell edges of the sigma_w axis
  num_points: int
  cache: dict[tuple, list[MapLine]]  # (activation, family, bias, sigma_b) -> lines


def _grid(values: pd.Series, num: int) -> np.ndarray:
  """`num` points spanning the drawn extent (outer cell edges) of a numeric map axis."""
  v = values.to_numpy(dtype=float)
  log = is_log_spaced(v)
  lo, hi = cell_edges(v, log)[[0, -1]]
  return np.geomspace(lo, hi, num) if log else np.linspace(max(lo, 0.0), hi, num)


def map_lines(config: Mapping[str, Any], axes: Sequence[str], df: pd.DataFrame,
              num_points: int = CURVE_POINTS) -> PanelLines | None:
  """The theory lines of a sweep's maps, as a `gradlab.viz.maps.PanelLines` function, or
  None when ``init.sigma_w`` is not one of the two map axes or the other axis is one the
  critical line depends on (see the module docstring).

  `config` is the saved nested config (``results.read_config(workdir)["config"]``), `df`
  the results frame (its axis columns set the extent of the curves). A panel whose
  effective config has no mean-field theory (`skip_reason`) gets no lines.
  """
  map_axes = list(axes[:2])
  if SIGMA_W not in map_axes or not config:
    return None
  other = next((a for a in map_axes if a != SIGMA_W), None)
  if other in _THEORY_KEYS:
    return None
  theory = _MapTheory(flatten(config), other, df, cell_edges(df[SIGMA_W].to_numpy(dtype=float)),
                      num_points, {})
  return functools.partial(_panel_lines, theory)


def _panel_lines(theory: _MapTheory, panel: Mapping[str, Any]) -> list[MapLine]:
  """The lines over one panel, whose values of axes[2:] are `panel`."""
  flat = {**theory.base, **panel}
  if skip_reason(flat) is not None:
    return []
  act, family, bias = flat["model.activation"], flat["init.family"], flat["model.use_bias"]
  key = (act, family, bias, float(flat.get(SIGMA_B, 0.0)))
  if key not in theory.cache:
    theory.cache[key] = _theory_lines(theory, act, family, bool(bias), key[3])
  return theory.cache[key]


def _theory_lines(theory: _MapTheory, act: str, family: str, bias: bool, sigma_b: float
                  ) -> list[MapLine]:
  df, other, num_points = theory.df, theory.other, theory.num_points
  if other == SIGMA_B:
    b = _grid(df[SIGMA_B], num_points)
    w = np.array([critical_sigma_w(act, v, family, bias) for v in b])
    return [MapLine("mean field chi_1 = 1", {SIGMA_W: w.tolist(), SIGMA_B: b.tolist()},
                    CRITICAL_COLOR)]
  out = []
  w_crit = critical_sigma_w(act, sigma_b, family, bias)
  if np.isfinite(w_crit) and theory.w_edges[0] <= w_crit <= theory.w_edges[-1]:
    out.append(MapLine(f"mean field chi_1 = 1\n(sigma_w = {w_crit:.3g})",
                       {SIGMA_W: [w_crit]}, CRITICAL_COLOR))
  if other == DEPTH:
    w = _grid(df[SIGMA_W], num_points)
    depth = np.minimum(trainable_depth(act, w, sigma_b, family, bias), _OFF_THE_MAP)
    out.append(MapLine("trainable depth\n6 xi_c (mean field)", {SIGMA_W: w.tolist(),
                                                                DEPTH: depth.tolist()},
                       DEPTH_COLOR, "--"))
  return out


def lines_for_workdir(meta: Mapping[str, Any], axes: Sequence[str], df: pd.DataFrame
                      ) -> PanelLines | None:
  """`map_lines` from a workdir's saved metadata (`results.read_config`)."""
  config = meta.get("config") or {}
  required = ("model", "init")
  if not all(isinstance(config.get(k), Mapping) for k in required):
    return None
  return map_lines(config, axes, df)
