"""gradlab's init scales in the mean-field papers' variables, and where the theory applies.

gradlab's sigma_w is a SCALE on a unit-scale init family (`gradlab.models.init`), so a
hidden N x N kernel has entry variance g sigma_w^2 / N, with g the family's hidden-layer
variance gain (`FAMILY_VARIANCE_GAIN`); the papers' sigma_w2 is g sigma_w^2 (g = 1 for
LeCun, which makes sigma_w2 = sigma_w^2). A model without biases has sigma_b2 = 0.

The closed forms are `gradlab.theory`'s (Poole et al. 2016, "Exponential expressivity
in deep neural networks through transient chaos"; Schoenholz et al. 2017, "Deep
information propagation"); this module only converts scales and says when they apply.
The map overlays (`gradlab.viz.overlays`) and the one-run diagnostics
(`gradlab.diagnostics.run_summary`) read it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from gradlab import theory

FAMILY_VARIANCE_GAIN: dict[str, float] = {"lecun": 1.0, "glorot": 1.0, "orthogonal": 1.0,
                                          "he": 2.0}
"""Entry variance x fan_in of a hidden (square) kernel at sigma_w = 1, per init family.
glorot's fan_avg equals fan_in for square kernels; an N x N orthogonal matrix has entry
variance 1 / N, and the mean-field maps hold for orthogonal weights at large width."""


def skip_reason(flat: Mapping[str, Any]) -> str | None:
  """None when the mean-field lines apply to this (flattened) config, else why not."""
  if flat.get("model.name") != "mlp":
    return f"model '{flat.get('model.name')}' is not a plain MLP"
  if flat.get("model.layer_norm"):
    return "the MLP has layer norm, which the mean-field maps do not model"
  if flat.get("model.norm", "none") != "none":
    return (f"the MLP has model.norm '{flat.get('model.norm')}', which the mean-field maps "
            "do not model")
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
