"""Name -> builder registries with "did you mean" errors.

A new model, optimizer, dataset or activation is one decorated function in its own
module::

    MODELS = Registry("model")

    @MODELS.register("mlp")
    def build_mlp(cfg): ...

    MODELS.get("mlpp")  # ConfigError: unknown model 'mlpp' (did you mean 'mlp'?); known: mlp
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
  """A user-facing configuration error: one clear sentence, raised before any compile."""


def did_you_mean(name: Any, known: Iterable[str]) -> str:
  """`` (did you mean 'x'?)`` for the closest of `known` to `name`, or '' when none is
  close: the hint of every unknown-name error (registries, config keys, sweep axes)."""
  close = difflib.get_close_matches(str(name), list(known), n=1)
  return f" (did you mean '{close[0]}'?)" if close else ""


class Registry(Generic[T]):
  """A mapping from names to builders, filled by the `register` decorator."""

  def __init__(self, kind: str):
    self.kind = kind
    self._entries: dict[str, T] = {}

  def register(self, name: str, *aliases: str) -> Callable[[T], T]:
    def wrap(obj: T) -> T:
      for n in (name, *aliases):
        if n in self._entries:
          raise ValueError(f"{self.kind} '{n}' registered twice")
        self._entries[n] = obj
      return obj

    return wrap

  def get(self, name: str) -> T:
    if name not in self._entries:
      raise ConfigError(self.unknown_message(name))
    return self._entries[name]

  def unknown_message(self, name: Any) -> str:
    return (f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; known: "
            f"{', '.join(sorted(self._entries))}")

  def names(self) -> list[str]:
    return sorted(self._entries)

  def __contains__(self, name: object) -> bool:
    return name in self._entries

  def __iter__(self) -> Iterator[str]:
    return iter(sorted(self._entries))
