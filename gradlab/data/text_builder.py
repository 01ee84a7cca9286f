"""gradlab's offline TFDS builder ``gradlab_pydocs``: character-level text from the
docstrings of the installed Python standard library.

Nothing is downloaded and no standard-library module is imported or run: each top-level
module of ``sys.stdlib_module_names`` (sorted by name) whose source is a ``.py`` file is
parsed with `ast`, and the docstrings of the module, its classes and its functions are
taken in source order (`ast.walk` order), joined by blank lines. Tabs become spaces; any
character outside `PYDOCS_CHARS` (newline and printable ASCII, 96 characters) is dropped.
The first 90% of the characters are the ``train`` split, the rest ``test``; each split
is one record ``{'text': ...}``, as in TFDS's ``tiny_shakespeare``. The text depends on
the installed Python version (about 1 MB with CPython 3.11), and is fixed by it.

Importing this module registers ``gradlab_pydocs`` with TFDS; `gradlab.data.text` imports
it lazily.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds

from gradlab.data.builders import _OfflineBuilder
from gradlab.data.vocab import PYDOCS_CHARS

TRAIN_FRACTION = 0.9


def module_docstrings(name: str) -> list[str]:
  """Docstrings of the stdlib module `name` (module, classes, functions), parsed from its
  source without importing it; [] when it has no .py source or does not parse."""
  try:
    spec = importlib.util.find_spec(name)
  except (ImportError, ValueError):
    return []
  if spec is None or not spec.origin or not spec.origin.endswith(".py"):
    return []
  try:
    with open(spec.origin, encoding="utf-8") as f:
      tree = ast.parse(f.read())
  except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
    return []
  kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
  return [d for node in ast.walk(tree) if isinstance(node, kinds)
          for d in [ast.get_docstring(node)] if d]


def clean(text: str) -> str:
  """Tabs -> spaces; characters outside PYDOCS_CHARS dropped."""
  allowed = set(PYDOCS_CHARS)
  return "".join(c for c in text.replace("\t", " ") if c in allowed)


def pydocs_text() -> str:
  """The whole corpus: every stdlib module's docstrings, modules sorted by name."""
  names = sorted(sys.stdlib_module_names)
  return clean("\n\n".join(d for name in names for d in module_docstrings(name)))


class GradlabPydocs(_OfflineBuilder):
  """Character-level docstrings of the installed Python standard library (offline)."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "stdlib docstrings, 96-character vocabulary, 90/10 split."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description=(f"Docstrings of the Python {sys.version_info.major}."
                   f"{sys.version_info.minor} standard library, character level."),
      features=tfds.features.FeaturesDict({"text": tfds.features.Text()}),
      supervised_keys=None,
      homepage="https://docs.python.org/3/library/",
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # nothing to download
    text = pydocs_text()
    cut = int(len(text) * TRAIN_FRACTION)
    return {"train": self._generate_examples(text[:cut]),
            "test": self._generate_examples(text[cut:])}

  def _generate_examples(self, text: str) -> Iterator[tuple[int, dict[str, Any]]]:  # type: ignore[override]
    """One record per split: the whole split's text."""
    yield 0, {"text": text}
