"""The mean-field theory's lines over a sweep's regime and final-loss maps.

Where a sweep's model is a plain MLP (``model.name = 'mlp'``, no layer norm) with an
activation the theory knows (`gradlab.theory.MEAN_FIELD_ACTIVATIONS`) and ``init.sigma_w``
is one of the map's two axes, `map_lines` returns the lines to draw over each panel
(`gradlab.plots.regime_figure`'s ``lines`` hook):

- the critical line, where chi_1 = 1 (Poole et al. 2016, "Exponential expressivity in
  deep neural networks through transient chaos", sec. 2; Schoenholz et al. 2017, "Deep
  information propagation", sec. 2): sigma_w* = sqrt(critical_sigma_w2(phi, sigma_b2) / g).
  A straight line across the other axis when that axis is one the line does not depend
  on (learning rate, optimizer, seed, ...); the curve sigma_w*(sigma_b) when the other
  axis is ``init.sigma_b``;
- the trainable depth, when the other axis is ``model.depth``: the curve
  depth = 6 xi_c(g sigma_w^2, sigma_b^2) against sigma_w (Schoenholz et al. 2017, sec. 6:
  a random network trains when its depth is below about 6 xi_c), beside the critical line.

g is the init family's hidden-layer variance gain (`FAMILY_VARIANCE_GAIN`): gradlab's
sigma_w is a SCALE on a unit-scale family (`gradlab.models.init`), so a hidden N x N
kernel has entry variance g sigma_w^2 / N, and the papers' sigma_w2 is g sigma_w^2
(g = 1 for LeCun, which makes sigma_w2 = sigma_w^2). A model without biases has
sigma_b2 = 0. Panel axes (``axes[2:]``) override the saved config's values, so a panel
per sigma_b or per activation gets its own line; an axis the line itself depends on
(activation, init family, model name, layer norm, use_bias) as the map's other axis
gets no line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from gradlab import plots, theory
from gradlab.config import flatten

SIGMA_W = "init.sigma_w"
SIGMA_B = "init.sigma_b"
DEPTH = "model.depth"
# Keys the critical line depends on besides sigma_b: as the map's other axis, no line.
_THEORY_KEYS = ("model.name", "model.activation", "model.layer_norm", "model.use_bias",
                "init.family")
FAMILY_VARIANCE_GAIN: dict[str, float] = {"lecun": 1.0, "glorot": 1.0, "orthogonal": 1.0,
                                          "he": 2.0}
"""Entry variance x fan_in of a hidden (square) kernel at sigma_w = 1, per init family.
glorot's fan_avg equals fan_in for square kernels; an N x N orthogonal matrix has entry
variance 1 / N, and the mean-field maps hold for orthogonal weights at large width."""

CRITICAL_COLOR = "#1f4fff"
DEPTH_COLOR = "#e000e0"
CURVE_POINTS = 40
_OFF_THE_MAP = 1e9  # xi_c = inf on the critical line: draw the curve off the top


def skip_reason(flat: Mapping[str, Any]) -> str | None:
  """None when the mean-field lines apply to this (flattened) config, else why not."""
  if flat.get("model.name") != "mlp":
    return f"model '{flat.get('model.name')}' is not a plain MLP"
  if flat.get("model.layer_norm"):
    return "the MLP has layer norm, which the mean-field maps do not model"
  if flat.get("model.activation") not in theory.MEAN_FIELD_ACTIVATIONS:
    return f"activation '{flat.get('model.activation')}' has no mean-field theory"
  if flat.get("init.family") not in FAMILY_VARIANCE_GAIN:
    return f"init family '{flat.get('init.family')}' has no known variance gain"
  return None


def mean_field_variances(sigma_w: Any, sigma_b: Any, family: str = "lecun",
                         use_bias: bool = True) -> tuple[Any, Any]:
  """The papers' (sigma_w2, sigma_b2) of gradlab's scales: (g sigma_w^2, sigma_b^2), with
  sigma_b2 = 0 without biases (g: `FAMILY_VARIANCE_GAIN`)."""
  sigma_w2 = FAMILY_VARIANCE_GAIN[family] * theory.sigma_w2_from_scale(sigma_w)
  sigma_b2 = theory.sigma_b2_from_scale(sigma_b) if use_bias else 0.0 * np.asarray(sigma_b)
  return sigma_w2, sigma_b2


def critical_sigma_w(activation: str, sigma_b: float, family: str = "lecun",
                     use_bias: bool = True) -> float:
  """The weight SCALE sigma_w where chi_1 = 1 (Poole et al. 2016, sec. 2):
  sqrt(critical_sigma_w2(activation, sigma_b2) / g). 1 for tanh and sqrt(2) for relu with
  sigma_b = 0 and the LeCun family."""
  _, sigma_b2 = mean_field_variances(1.0, sigma_b, family, use_bias)
  sigma_w2 = theory.critical_sigma_w2(activation, float(sigma_b2))
  return float(theory.scale_from_variance(sigma_w2 / FAMILY_VARIANCE_GAIN[family]))


def trainable_depth(activation: str, sigma_w: Any, sigma_b: float, family: str = "lecun",
                    use_bias: bool = True) -> np.ndarray:
  """6 xi_c at gradlab's scales (Schoenholz et al. 2017, sec. 6), vectorized over sigma_w:
  the depth below which a random network of these scales trains. inf on the critical
  line; NaN where q* diverges."""
  sigma_w2, sigma_b2 = mean_field_variances(np.asarray(sigma_w, float), sigma_b, family,
                                            use_bias)
  return theory.trainable_depth(activation, sigma_w2, sigma_b2)


def _grid(values: pd.Series, num: int) -> np.ndarray:
  """`num` points spanning the drawn extent (outer cell edges) of a numeric map axis."""
  v = values.to_numpy(dtype=float)
  log = plots.is_log_spaced(v)
  lo, hi = plots.cell_edges(v, log)[[0, -1]]
  return np.geomspace(lo, hi, num) if log else np.linspace(max(lo, 0.0), hi, num)


def map_lines(config: Mapping[str, Any], axes: Sequence[str], df: pd.DataFrame,
              num_points: int = CURVE_POINTS) -> plots.PanelLines | None:
  """The theory lines of a sweep's maps, as a `plots.PanelLines` function, or None when
  ``init.sigma_w`` is not one of the two map axes or the other axis is one the critical
  line depends on (see the module docstring).

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
  base = flatten(config)
  w_edges = plots.cell_edges(df[SIGMA_W].to_numpy(dtype=float))
  cache: dict[tuple, list[plots.MapLine]] = {}

  def lines(panel: Mapping[str, Any]) -> list[plots.MapLine]:
    flat = {**base, **panel}
    if skip_reason(flat) is not None:
      return []
    act, family, bias = flat["model.activation"], flat["init.family"], flat["model.use_bias"]
    key = (act, family, bias, float(flat.get(SIGMA_B, 0.0)))
    if key not in cache:
      cache[key] = _lines(act, family, bool(bias), key[3])
    return cache[key]

  def _lines(act: str, family: str, bias: bool, sigma_b: float) -> list[plots.MapLine]:
    if other == SIGMA_B:
      b = _grid(df[SIGMA_B], num_points)
      w = np.array([critical_sigma_w(act, v, family, bias) for v in b])
      return [plots.MapLine("mean field chi_1 = 1", {SIGMA_W: w.tolist(), SIGMA_B: b.tolist()},
                            CRITICAL_COLOR)]
    out = []
    w_crit = critical_sigma_w(act, sigma_b, family, bias)
    if np.isfinite(w_crit) and w_edges[0] <= w_crit <= w_edges[-1]:
      out.append(plots.MapLine(f"mean field chi_1 = 1\n(sigma_w = {w_crit:.3g})",
                               {SIGMA_W: [w_crit]}, CRITICAL_COLOR))
    if other == DEPTH:
      w = _grid(df[SIGMA_W], num_points)
      depth = np.minimum(trainable_depth(act, w, sigma_b, family, bias), _OFF_THE_MAP)
      out.append(plots.MapLine("trainable depth\n6 xi_c (mean field)", {SIGMA_W: w.tolist(),
                                                          DEPTH: depth.tolist()},
                               DEPTH_COLOR, "--"))
    return out

  return lines


def lines_for_workdir(meta: Mapping[str, Any], axes: Sequence[str], df: pd.DataFrame
                      ) -> plots.PanelLines | None:
  """`map_lines` from a workdir's saved metadata (`results.read_config`)."""
  config = meta.get("config") or {}
  required = ("model", "init")
  if not all(isinstance(config.get(k), Mapping) for k in required):
    return None
  return map_lines(config, axes, df)
