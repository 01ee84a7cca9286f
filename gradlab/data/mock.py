"""``data.mock = N``: a TFDS catalog dataset served with N generated examples.

The way to dry-run a config before renting an accelerator: every catalog dataset
(``mnist``, ``cifar10``, ...) goes through gradlab's real reading path
(`gradlab.data.loader.read_splits`: ``builder.as_data_source()``, records read in
chunks, standardized with train statistics) but its records come from
``tfds.testing.mock_data`` (policy USE_CODE): N examples per split, each feature drawn
at the dataset's own shape and dtype from its ``info.features`` (labels within the
dataset's classes), the same N for every run (TFDS seeds the draws). Nothing is
downloaded or prepared, so a config runs end to end here exactly as it would on the
real data, only with meaningless numbers; train and test hold the same draws.

Catalog datasets whose TFDS builder imports TensorFlow (coco, librispeech) cannot be
built without it, so TFDS cannot mock them here. Their loader module may declare the
builder's features by hand (`DECLARED_FEATURES`: the ``tfds.features.FeaturesDict`` of
the builder's ``_info``, which needs no TensorFlow): their mock records then come from
the generator ``tfds.testing.mock_data`` itself uses (``RandomFakeGenerator``, record i
drawn from seed i), so they are the records TFDS's mock would serve where TensorFlow is
installed, and `read_mock_splits` hands them to the same reader. Undeclared ones fail
with one line. gradlab's own offline builders (``gradlab_*``) ignore ``data.mock``: they
generate their data anyway.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from gradlab.registry import Registry

MOCK_SPLITS = ("train", "test")

# TFDS catalog name -> () -> its tfds.features.FeaturesDict, copied from the builder's
# _info, for builders that need TensorFlow to be constructed (module docstring).
DECLARED_FEATURES: Registry[Callable[[], Any]] = Registry("declared catalog features")


class DeclaredInfo(NamedTuple):
  """The `info` a reader gets for a declared dataset (a builder's has more)."""

  name: str
  features: Any  # tfds.features.FeaturesDict


class MockUnavailableError(Exception):
  """A catalog dataset that cannot be mocked here (the loader reports it as its
  DatasetUnavailableError)."""


_ACTIVE: contextvars.ContextVar[int] = contextvars.ContextVar("gradlab_data_mock", default=0)


@contextlib.contextmanager
def serving(n: int) -> Iterator[None]:
  """Inside, catalog datasets are read as `n` mock examples per split (0: real data)."""
  token = _ACTIVE.set(int(n))
  try:
    yield
  finally:
    _ACTIVE.reset(token)


def active() -> int:
  """The mock examples per split in force (0: none)."""
  return _ACTIVE.get()


def read_mock_splits(tfds_name: str, n: int, name: str,
                     read: Callable[[Sequence[Any], Any], Any],
                     splits: Sequence[str] = MOCK_SPLITS) -> tuple[dict[str, Any], Any]:
  """({split: read(source, info)}, info) of catalog dataset `tfds_name` with `n` mock
  examples per split of `splits`; a MockUnavailableError (one line) when its
  builder cannot be made here. Declared datasets (`DECLARED_FEATURES`) need no builder."""
  import tensorflow_datasets as tfds

  if tfds_name in DECLARED_FEATURES:
    info = DeclaredInfo(tfds_name, DECLARED_FEATURES.get(tfds_name)())
    records = _Records(declared_records(info.features, n))
    return {split: read(records, info) for split in splits}, info
  try:
    with tfds.testing.mock_data(num_examples=n, policy=tfds.testing.MockPolicy.USE_CODE):
      builder = tfds.builder(tfds_name, file_format="array_record")
      out = {split: read(_Records(builder.as_data_source(split=split)), builder.info)
             for split in splits}
  except Exception as e:
    raise MockUnavailableError(
      f"dataset '{name}' cannot be served as mock data (data.mock={n}): "
      f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
  return out, builder.info


def declared_records(features: Any, n: int) -> list[Any]:
  """`n` mock records of `features` (a tfds.features.FeaturesDict), as
  ``tfds.testing.mock_data`` serves a data source of a builder with these features:
  record i from ``RandomFakeGenerator(features, n)[i]`` (numpy, seed i). Variable
  dimensions are drawn in [5, 50), independently per leaf (the leaves of one
  ``Sequence`` get different lengths)."""
  from tensorflow_datasets.testing.mocking import RandomFakeGenerator

  generator = RandomFakeGenerator(features, n)
  return [generator[i] for i in range(n)]


class _Records:
  """A mock data source as gradlab's readers use one: ``len``, ``[i]`` and
  ``__getitems__`` (the mock's own batched read takes other arguments)."""

  def __init__(self, source: Any):
    self.source = source

  def __len__(self) -> int:
    return len(self.source)

  def __getitem__(self, index: int) -> Any:
    return self.source[index]

  def __getitems__(self, indices: Sequence[int]) -> list[Any]:
    return [self.source[int(i)] for i in indices]
