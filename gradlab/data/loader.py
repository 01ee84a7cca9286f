"""Dataset registry, the one loading function, and train-split standardization.

Every dataset is a name in ``DATASETS`` mapping to a loader ``(data_dir, seed) ->
Dataset``. TFDS datasets, gradlab's own offline builders (``mnist1d``, ``digits``) and
catalog names (``mnist``, ``fashion_mnist``, ``cifar10``) alike, go through
``read_tfds``: ``tfds.builder(name, file_format='array_record')``, prepare if needed,
then ``as_data_source()`` and read every record into numpy. No TensorFlow needed.

Nothing is cached in memory between calls; TFDS's files in ``data_dir`` are the cache.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

import ml_collections as mlc
import numpy as np

from gradlab.config import register_keys
from gradlab.data import mock
from gradlab.registry import ConfigError, Registry

# The config's data section, read by the loaders (`load_dataset`), the sampler and the
# streamed runner.
DATA_KEYS: dict[str, Any] = register_keys("data", dict(
  name="mnist1d",   # a `DATASETS` name
  data_dir="",      # '' = TFDS's default
  batch_size=64,    # 0 = full batch
  augment="none",   # none | crop_flip (on device, per sampled minibatch)
  seq_len=20,       # sequence tasks: T (static)
  stream=0,         # 0: whole train split on device; N: stream N examples per segment
  mock=0,           # 0: real data; N: catalog datasets as N generated examples per split
), family="data", positive=("seq_len",), non_negative=("stream", "batch_size", "mock"))

MIN_STD = 1e-6
_READ_CHUNK = 4096

DataDir = str | os.PathLike | None


class Task(NamedTuple):
  """What a dataset asks of training (docs/extending.md).

  loss: the `gradlab.losses` name ``train.loss='auto'`` resolves to.
  sampler: ``(key, batch_size) -> (x, y)``, a pure JAX function that GENERATES each
    minibatch on device inside the training scan (generated tasks); None: minibatches
    are sampled from the train split.
  chance: the task's stated chance-level loss (what ``stalled`` is judged against);
    None: the loss's own ``chance(y_train, num_classes)``.
  """

  loss: str = "cross_entropy"
  sampler: Callable[..., Any] | None = None
  chance: float | None = None


CLASSIFICATION = Task()


class Dataset(NamedTuple):
  """A dataset held as host numpy arrays, and the task it poses.

  Attributes:
    name: the gradlab name it was loaded under.
    x_train: float32 (N, *feature_shape), standardized with train statistics.
    y_train: int32 (N,) class labels in [0, num_classes); or int32 (N, T) labels per
      step (-1: ignored); or float32 (N, k) targets (regression, localization).
    x_test: float32 (M, *feature_shape) standardized with TRAIN statistics; None if the
      dataset has no test split.
    y_test: int32 (M,) or None.
    num_classes: number of model outputs (per position).
    task: the task's loss, generator and chance level (`Task`).
  """

  name: str
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray | None
  y_test: np.ndarray | None
  num_classes: int
  task: Task = CLASSIFICATION


# (data_dir, seed, data_cfg) -> Dataset; data_cfg is the config's `data` section (None:
# defaults), for options such as data.seq_len.
DatasetLoader = Callable[[DataDir, int, Any], Dataset]
DATASETS: Registry[DatasetLoader] = Registry("dataset")


class DatasetUnavailableError(ConfigError):
  """A dataset is known but its data is neither on disk nor obtainable (e.g. offline)."""


def dataset_names() -> list[str]:
  """Sorted names accepted by `load_dataset`."""
  return DATASETS.names()


def load_dataset(name: str, data_dir: DataDir = None, seed: int = 0,
                 data_cfg: Any = None) -> Dataset:
  """Loads dataset `name` as standardized numpy arrays.

  Args:
    name: a registered name (see `dataset_names()`). Unknown names raise `ConfigError`
      listing the known ones, before anything is read or generated.
    data_dir: TFDS data directory; None means TFDS's default (``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``). gradlab's builders prepare themselves there on first use.
      Synthetic tasks ignore it.
    seed: selects the draw of a synthetic task (teacher weights, blob centres, inputs).
      TFDS datasets ignore it: their splits are fixed.
    data_cfg: the config's ``data`` section (e.g. ``seq_len`` of sequence tasks); None
      means the defaults of `DATA_KEYS`.

  Returns:
    A `Dataset`; x standardized with train statistics (see `feature_stats`).

  Raises:
    ConfigError: unknown name.
    DatasetUnavailableError (a ConfigError): a catalog dataset (``mnist``,
      ``fashion_mnist``, ``cifar10``) that is not prepared in ``data_dir`` and cannot be
      downloaded and prepared here, e.g. on a machine without network. The attempt is
      made once and its failure re-raised as this one-sentence error. Note that TFDS
      encodes catalog images with TensorFlow while preparing, so prepare them once where
      network and tensorflow are available (``tfds build mnist
      --file_format=array_record --data_dir=DIR``) and copy DIR over; reading needs
      neither.
  """
  loader = DATASETS.get(name)
  if data_cfg is None:
    data_cfg = mlc.ConfigDict(dict(DATA_KEYS, name=name))
  with mock.serving(int(data_cfg.get("mock", 0))):  # data.mock: gradlab.data.mock
    return loader(data_dir, seed, data_cfg)


def feature_stats(x_train: np.ndarray, min_std: float = MIN_STD) -> tuple[np.ndarray, np.ndarray]:
  """Train-split statistics used for standardization, shaped to broadcast against x.

  Vector data (x of rank 2, shape (N, D)): a mean and std per feature. Image-like data
  (rank >= 3, channels last, e.g. (N, H, W, C)): one mean and std per channel, pooled over
  examples and positions, so constant border pixels are not blown up. Std is floored at
  `min_std`.
  """
  axes = (0,) if x_train.ndim <= 2 else tuple(range(x_train.ndim - 1))
  x64 = x_train.astype(np.float64)
  mean = x64.mean(axis=axes, keepdims=True)
  std = np.maximum(x64.std(axis=axes, keepdims=True), min_std)
  return mean, std


def standardize(
  x_train: np.ndarray, x_test: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None]:
  """Standardizes train and test with train statistics (`feature_stats`); float32 out."""
  mean, std = feature_stats(x_train)

  def apply(x: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)

  return apply(x_train), None if x_test is None else apply(x_test)


def make_dataset(
  name: str,
  x_train: np.ndarray,
  y_train: np.ndarray,
  x_test: np.ndarray | None,
  y_test: np.ndarray | None,
  num_classes: int,
  task: Task = CLASSIFICATION,
  standardize_x: bool = True,
) -> Dataset:
  """Builds a `Dataset` from raw arrays: standardizes x (unless told not to: token ids,
  generated tasks), casts integer labels to int32 and float targets to float32."""
  x_train = np.asarray(x_train)
  x_test = None if x_test is None else np.asarray(x_test)
  if standardize_x:
    x_train, x_test = standardize(x_train, x_test)

  def labels(y: np.ndarray | None) -> np.ndarray | None:
    if y is None:
      return None
    y = np.asarray(y)
    return y.astype(np.float32 if np.issubdtype(y.dtype, np.floating) else np.int32)

  return Dataset(name=name, x_train=x_train, y_train=labels(y_train), x_test=x_test,
                 y_test=labels(y_test), num_classes=int(num_classes), task=task)


@contextlib.contextmanager
def _quiet_tfds() -> Iterator[None]:
  """Runs TFDS preparation without side effects on the caller.

  Silences TFDS progress bars, its stdout banner and absl warnings, and puts back
  Python's and numpy's global RNG states, which TFDS (temp-dir names) and mnist1d
  (``set_seed``) draw from or reseed. Everything is restored on exit.
  """
  import tensorflow_datasets as tfds
  from absl import logging as absl_logging
  from tensorflow_datasets.core.utils import tqdm_utils

  bars_were_on = getattr(tqdm_utils, "_active", True)
  verbosity = absl_logging.get_verbosity()
  py_rng, np_rng = random.getstate(), np.random.get_state()  # noqa: NPY002
  tfds.display_progress_bar(False)
  absl_logging.set_verbosity(absl_logging.ERROR)
  try:
    with contextlib.redirect_stdout(io.StringIO()):
      yield
  finally:
    absl_logging.set_verbosity(verbosity)
    tfds.display_progress_bar(bars_were_on)
    random.setstate(py_rng)
    np.random.set_state(np_rng)  # noqa: NPY002


def _read_split(source: Sequence[Any], feature_key: str, label_key: str) -> tuple[np.ndarray, ...]:
  """Reads every record of an array_record data source, in its stored (stable) order."""
  n = len(source)
  xs, ys = [], []
  for start in range(0, n, _READ_CHUNK):
    x, y = read_records(source, range(start, min(n, start + _READ_CHUNK)), feature_key,
                        label_key)
    xs.append(x)
    ys.append(y)
  return np.concatenate(xs), np.concatenate(ys)


def prepared_builder(tfds_name: str, data_dir: DataDir = None, display_name: str | None = None
                     ) -> Any:
  """The TFDS builder of `tfds_name` (array_record), prepared first if it is not yet;
  a DatasetUnavailableError if it cannot be (e.g. a catalog dataset, offline)."""
  import tensorflow_datasets as tfds

  from gradlab.data import builders  # noqa: F401  (registers gradlab_* with TFDS)

  name = display_name or tfds_name
  where = os.fspath(data_dir) if data_dir is not None else "the default TFDS data dir"
  own = tfds_name.startswith("gradlab_")
  try:
    with _quiet_tfds():
      builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
      if not builder.is_prepared():
        if not own:  # a catalog dataset: judge in seconds whether a download can work
          _check_downloadable(builder, name, tfds_name)
        builder.download_and_prepare()
  except DatasetUnavailableError:
    raise
  except Exception as e:  # any failure here means "not available"
    how = "generated" if own else "downloaded and prepared"
    raise DatasetUnavailableError(
      f"dataset '{name}' is not prepared in {where} and could not be {how}: {type(e).__name__}: {e}"
    ) from None
  return builder


def check_obtainable(name: str, data_dir: DataDir = None, mock_examples: int = 0) -> None:
  """For a TFDS catalog name (`TFDS_NAMES`, not gradlab's own builders): nothing when it
  is prepared in `data_dir` or served as mock data (`mock_examples` > 0), else the fast
  DatasetUnavailableError of `prepared_builder` when it cannot be downloaded here. Reads
  no data: a sweep calls it before it writes anything. Other names pass (they are
  generated, or checked when loaded)."""
  tfds_name = TFDS_NAMES.get(name) or CATALOG_LOADERS.get(name, "gradlab_")
  if tfds_name.startswith("gradlab_") or mock_examples > 0:
    return
  import tensorflow_datasets as tfds

  with _quiet_tfds():
    try:
      builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
    except Exception as e:  # e.g. a builder that imports TensorFlow (coco, librispeech)
      raise DatasetUnavailableError(
        f"dataset '{name}' cannot be read here: TFDS could not make its builder "
        f"'{tfds_name}' ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
        f"its builder needs TensorFlow (pip install tensorflow-cpu), or dry-run it with "
        f"data.mock=N") from None
    if not builder.is_prepared():
      _check_downloadable(builder, name, tfds_name)


def _check_downloadable(builder: Any, name: str, tfds_name: str) -> None:
  """A DatasetUnavailableError, within seconds and before any download attempt, when the
  unprepared catalog `builder` cannot be prepared here (`offline.preparation_blocker`:
  no network, or no TensorFlow), saying how to prepare it elsewhere and where to copy it
  (TFDS would otherwise retry each download for minutes)."""
  from gradlab.data import offline

  blocker = offline.preparation_blocker(builder)
  if blocker is not None:
    root = os.fspath(builder.data_dir_root)
    raise DatasetUnavailableError(
      f"dataset '{name}' is not prepared in {root} and cannot be downloaded here "
      f"({blocker}); {offline.how_to_prepare(tfds_name, root)}")


def read_records(source: Sequence[Any], indices: Sequence[int], feature_key: str,
                 label_key: str) -> tuple[np.ndarray, np.ndarray]:
  """The records at `indices` of an array_record data source: (x float32, y int32)."""
  records = source.__getitems__([int(i) for i in indices])
  return (np.stack([np.asarray(r[feature_key], dtype=np.float32) for r in records]),
          np.asarray([r[label_key] for r in records], dtype=np.int32))


def iter_records(source: Sequence[Any], chunk: int = _READ_CHUNK) -> Iterator[Any]:
  """Every record of an array_record data source, in its stored (stable) order, read
  `chunk` records at a time."""
  for start in range(0, len(source), chunk):
    yield from source.__getitems__(list(range(start, min(len(source), start + chunk))))


def read_splits(tfds_name: str, data_dir: DataDir, display_name: str | None,
                read: Callable[[Sequence[Any], Any], Any],
                splits: Sequence[str] = mock.MOCK_SPLITS) -> tuple[dict[str, Any], Any]:
  """({split: read(source, builder.info)}, builder.info) of a TFDS dataset, prepared
  first if needed; a failure to read is one DatasetUnavailableError naming the dataset.
  With ``data.mock`` (`gradlab.data.mock`) the `splits` named are generated instead.
  The one reading path of every TFDS-backed loader (classification, text, audio,
  localization)."""
  name = display_name or tfds_name
  if mock.active() and not tfds_name.startswith("gradlab_"):
    try:
      return mock.read_mock_splits(tfds_name, mock.active(), name, read, splits)
    except mock.MockUnavailableError as e:
      raise DatasetUnavailableError(str(e)) from None
  builder = prepared_builder(tfds_name, data_dir, name)
  try:
    splits = {str(split): read(source, builder.info)
              for split, source in builder.as_data_source().items()}
  except Exception as e:
    raise DatasetUnavailableError(
      f"dataset '{name}' in {builder.data_dir} could not be read as array_record: "
      f"{type(e).__name__}: {e}") from None
  return splits, builder.info


def read_tfds(
  tfds_name: str, data_dir: DataDir = None, display_name: str | None = None
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
  """Prepares (if needed) and reads a TFDS dataset into raw, unstandardized numpy arrays.

  The dataset is prepared with ``file_format='array_record'`` and read through
  ``builder.as_data_source()``; records come back in their stored order, which TFDS
  fixes from the example keys, so reading is deterministic run to run.

  Args:
    tfds_name: TFDS name, e.g. ``mnist`` or gradlab's ``gradlab_mnist1d``.
    data_dir: TFDS data dir; None is TFDS's default.
    display_name: the name used in error messages (defaults to `tfds_name`).

  Returns:
    ({split: (x float32 (N, *shape), y int32 (N,))}, num_classes).

  Raises:
    DatasetUnavailableError: not prepared and preparing failed (e.g. no network), or the
      prepared files cannot be read as array_record.
  """
  def read(source: Sequence[Any], info: Any) -> tuple[np.ndarray, np.ndarray]:
    return _read_split(source, *info.supervised_keys)

  splits, info = read_splits(tfds_name, data_dir, display_name, read)
  return splits, info.features[info.supervised_keys[1]].num_classes


def _load_tfds_dataset(data_dir: DataDir, seed: int, data_cfg: Any = None, *, name: str,
                       tfds_name: str) -> Dataset:
  """Loader for a TFDS-backed name: fixed splits, so `seed` is unused."""
  del seed, data_cfg
  splits, num_classes = read_tfds(tfds_name, data_dir, display_name=name)
  if "train" not in splits:
    raise DatasetUnavailableError(f"dataset '{name}' has no 'train' split; has {sorted(splits)}")
  x_test, y_test = splits.get("test", (None, None))
  return make_dataset(name, *splits["train"], x_test, y_test, num_classes)


# gradlab name -> TFDS name. gradlab_* are gradlab's offline builders (builders.py);
# the others are TFDS catalog datasets, which need network the first time.
TFDS_NAMES = {
  "mnist1d": "gradlab_mnist1d",
  "digits": "gradlab_digits",
  "mnist": "mnist",
  "fashion_mnist": "fashion_mnist",
  "cifar10": "cifar10",
  "cifar100": "cifar100",          # 100 fine labels ('label'; 'coarse_label' unused)
  "svhn_cropped": "svhn_cropped",  # 32x32x3 house-number digits; 'extra' split unused
}

# gradlab name -> TFDS catalog name, for catalog datasets with loaders of their own
# (e.g. imagenet2012's centre crops): `check_obtainable` checks them too.
CATALOG_LOADERS: dict[str, str] = {}

for _name, _tfds_name in TFDS_NAMES.items():
  DATASETS.register(_name)(functools.partial(_load_tfds_dataset, name=_name, tfds_name=_tfds_name))
