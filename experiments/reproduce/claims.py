"""A paper's claim against gradlab's number: the comparison rules and the verdict.

A `Claim` holds what `reproduction.json` lists per claim (name, claim, source,
paper_value, measured, tolerance, passed) and two more fields a reader needs: the rule
it was judged by (`comparison`, a sentence) and `note` (what the number means, or for a
failed claim, why it failed and what was tried). When `measured` is a curve (a list),
`compared` is the one number taken from it for the verdict and `statistic` says how.

Rules (`COMPARISONS`), each a predicate on (paper value p, measured m, tolerance t):

- ``abs``:      |m - p| <= t
- ``rel``:      |m - p| <= t |p|
- ``factor``:   p / t <= m <= p t          (t > 1: "within a factor of t")
- ``at_least``: m >= p - t                 (p is a lower bound the paper claims)
- ``at_most``:  m <= p + t                 (p is an upper bound the paper claims)
- ``above``:    m > p                      (a sign or an ordering; t unused, 0)

A measured value that is missing or not finite fails every rule, and the claim says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from gradlab.registry import Registry


@dataclasses.dataclass(frozen=True)
class Comparison:
  holds: Callable[[float, float, float], bool]
  text: str  # how the rule reads, with {p} and {t}


COMPARISONS: Registry[Comparison] = Registry("comparison")
COMPARISONS.register("abs")(Comparison(lambda p, m, t: abs(m - p) <= t, "|gradlab - {p}| <= {t}"))
COMPARISONS.register("rel")(
  Comparison(lambda p, m, t: abs(m - p) <= t * abs(p), "|gradlab - {p}| <= {t} x |{p}|"))
COMPARISONS.register("factor")(
  Comparison(lambda p, m, t: p / t <= m <= p * t, "within a factor {t} of {p}"))
COMPARISONS.register("at_least")(Comparison(lambda p, m, t: m >= p - t, "gradlab >= {p} - {t}"))
COMPARISONS.register("at_most")(Comparison(lambda p, m, t: m <= p + t, "gradlab <= {p} + {t}"))
COMPARISONS.register("above")(Comparison(lambda p, m, t: m > p, "gradlab > {p}"))


def _finite(x: Any) -> bool:
  try:
    return x is not None and math.isfinite(float(x))
  except (TypeError, ValueError):
    return False


def _num(x: Any) -> float | None:
  return float(x) if _finite(x) else None


def _fmt(x: float) -> str:
  return f"{x:.4g}"


@dataclasses.dataclass(frozen=True)
class Claim:
  name: str
  claim: str
  source: str
  paper_value: float
  measured: float | list[float] | None
  tolerance: float
  passed: bool
  comparison: str
  compared: float | None = None
  statistic: str = ""
  note: str = ""

  def to_json(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


def judge(name: str, claim: str, source: str, paper_value: float,
          measured: float | Sequence[float] | None, tolerance: float, rule: str = "abs",
          compared: float | None = None, statistic: str = "", note: str = "",
          why_failed: str = "") -> Claim:
  """Judges `measured` against `paper_value` by `rule` (`COMPARISONS`).

  For a curve, pass the list as `measured` and the number to judge as `compared` (with
  `statistic` saying how it was taken from the curve). `why_failed` is appended to the
  note when the claim fails (what was tried, what the measurement shows); a measured
  value that is missing or not finite fails with a sentence saying so.
  """
  comparison = COMPARISONS.get(rule)
  if rule == "factor" and not tolerance > 1:
    raise ValueError(f"claim '{name}': a 'factor' tolerance must exceed 1, got {tolerance}")
  curve = isinstance(measured, (list, tuple)) or np.ndim(measured) > 0  # numpy scalars: numbers
  value = compared if curve else measured
  measured = [_num(v) for v in list(measured)] if curve else _num(measured)
  number = _num(value)
  passed = number is not None and bool(comparison.holds(float(paper_value), number,
                                                        float(tolerance)))
  notes = [note] if note else []
  if number is None:
    notes.append("not measured: gradlab's value is missing or not finite")
  elif not passed and why_failed:
    notes.append(why_failed)
  return Claim(name=name, claim=claim, source=source, paper_value=float(paper_value),
               measured=measured, tolerance=float(tolerance), passed=passed,
               comparison=comparison.text.format(p=_fmt(float(paper_value)),
                                                 t=_fmt(float(tolerance))),
               compared=number if curve else None, statistic=statistic,
               note="; ".join(notes))
