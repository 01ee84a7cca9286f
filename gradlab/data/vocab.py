"""Character vocabularies of the language-modelling datasets: `CharVocab`, and the fixed
characters of ``pydocs`` (`PYDOCS_CHARS`), which its TFDS builder
(`gradlab.data.text_builder`) keeps and its loader (`gradlab.data.text`) encodes with."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

PYDOCS_CHARS = "\n" + "".join(chr(c) for c in range(32, 127))


class CharVocab:
  """A fixed character vocabulary: id i is ``chars[i]``."""

  def __init__(self, chars: Iterable[str]):
    self.chars = "".join(chars)
    if len(set(self.chars)) != len(self.chars):
      raise ValueError("a vocabulary's characters must be distinct")
    self._ids = {c: i for i, c in enumerate(self.chars)}

  def __len__(self) -> int:
    return len(self.chars)

  def encode(self, text: str) -> np.ndarray:
    """int32 ids of `text`'s characters; a character outside the vocabulary is a
    ValueError naming it."""
    try:
      return np.fromiter((self._ids[c] for c in text), dtype=np.int32, count=len(text))
    except KeyError as e:
      raise ValueError(f"character {e.args[0]!r} is not in the vocabulary") from None

  def decode(self, ids: Iterable[int]) -> str:
    return "".join(self.chars[int(i)] for i in ids)
