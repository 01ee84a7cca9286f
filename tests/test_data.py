"""Tests for gradlab.data: offline TFDS builders, loading, standardization, sampling."""

from __future__ import annotations

import functools
import random
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from gradlab.data import (
  DatasetUnavailableError,
  builders,
  dataset_names,
  feature_stats,
  load_dataset,
  read_tfds,
  sample_batch,
)
from gradlab.registry import ConfigError


def _sorted_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
  """(label, features) rows in lexicographic order: compares datasets as multisets."""
  rows = np.concatenate([y[:, None].astype(np.float64), x.reshape(len(x), -1)], axis=1)
  return rows[np.lexsort(rows.T[::-1])]


@pytest.fixture(scope="module")
def mnist1d_dir(tmp_path_factory):
  data_dir = tmp_path_factory.mktemp("tfds_mnist1d")
  load_dataset("mnist1d", data_dir=data_dir)  # prepares once for the module
  return data_dir


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds_digits")


# ----------------------------------------------------------------------------- registry


def test_registered_names():
  assert set(dataset_names()) >= {
    "mnist1d",
    "digits",
    "mnist",
    "fashion_mnist",
    "cifar10",
    "teacher",
    "gaussian_blobs",
  }


def test_unknown_name_lists_known_names_and_does_no_work(tmp_path):
  with pytest.raises(ConfigError) as err:
    load_dataset("mnits", data_dir=tmp_path)
  msg = str(err.value)
  assert "unknown dataset 'mnits'" in msg
  assert "did you mean 'mnist'" in msg
  for name in dataset_names():
    assert name in msg
  assert list(tmp_path.iterdir()) == []  # nothing prepared or downloaded


def test_import_does_not_import_tfds():
  code = "import sys, gradlab.data; assert 'tensorflow_datasets' not in sys.modules"
  subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# ----------------------------------------------------------------------------- mnist1d


def test_mnist1d_shapes_and_train_standardization(mnist1d_dir):
  ds = load_dataset("mnist1d", data_dir=mnist1d_dir)
  assert ds.name == "mnist1d"
  assert ds.x_train.shape == (4000, 40) and ds.x_test.shape == (1000, 40)
  assert ds.y_train.shape == (4000,) and ds.y_test.shape == (1000,)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.num_classes == 10
  assert set(np.unique(ds.y_train)) == set(range(10))
  np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)
  np.testing.assert_allclose(ds.x_train.std(axis=0), 1.0, atol=1e-4)

  # Test is standardized with TRAIN statistics, per feature.
  splits, num_classes = read_tfds("gradlab_mnist1d", mnist1d_dir)
  assert num_classes == 10
  (raw_train, y_train), (raw_test, y_test) = splits["train"], splits["test"]
  mean, std = feature_stats(raw_train)
  assert mean.shape == (1, 40)
  np.testing.assert_array_equal(y_train, ds.y_train)
  np.testing.assert_array_equal(y_test, ds.y_test)
  np.testing.assert_allclose(ds.x_test, (raw_test - mean) / std, rtol=1e-5, atol=1e-5)
  assert not np.allclose(ds.x_test.mean(axis=0), 0.0, atol=1e-5)  # not test's own stats


def test_mnist1d_stores_the_mnist1d_package_data(mnist1d_dir):
  from mnist1d import data as mnist1d_data

  splits, _ = read_tfds("gradlab_mnist1d", mnist1d_dir)
  ref = mnist1d_data.make_dataset(mnist1d_data.get_dataset_args())
  for split, (xk, yk) in {"train": ("x", "y"), "test": ("x_test", "y_test")}.items():
    x, y = splits[split]
    np.testing.assert_array_equal(
      _sorted_rows(x, y), _sorted_rows(ref[xk].astype(np.float32), ref[yk])
    )


def test_mnist1d_reload_is_identical_and_does_not_regenerate(mnist1d_dir, monkeypatch):
  first = load_dataset("mnist1d", data_dir=mnist1d_dir)

  def fail(*args, **kwargs):
    raise AssertionError("regenerated a prepared dataset")

  monkeypatch.setattr(builders.GradlabMnist1d, "_split_generators", fail)
  second = load_dataset("mnist1d", data_dir=mnist1d_dir)
  for a, b in zip(first, second, strict=True):
    if isinstance(a, np.ndarray):
      np.testing.assert_array_equal(a, b)
    else:
      assert a == b


def test_mnist1d_fresh_prepare_is_deterministic_and_keeps_global_rng(mnist1d_dir, tmp_path):
  random.seed(123)
  np.random.seed(123)  # noqa: NPY002  (checking the legacy global state is left alone)
  py_before, np_before = random.random(), np.random.rand()  # noqa: NPY002
  random.seed(123)
  np.random.seed(123)  # noqa: NPY002
  fresh = load_dataset("mnist1d", data_dir=tmp_path)
  assert (random.random(), np.random.rand()) == (py_before, np_before)  # noqa: NPY002
  old = load_dataset("mnist1d", data_dir=mnist1d_dir)
  np.testing.assert_array_equal(fresh.x_train, old.x_train)
  np.testing.assert_array_equal(fresh.y_test, old.y_test)


# ----------------------------------------------------------------------------- digits


def test_digits_stores_sklearn_digits(digits_dir):
  from sklearn.datasets import load_digits

  ds = load_dataset("digits", data_dir=digits_dir)
  assert ds.x_train.shape == (1437, 8, 8, 1) and ds.x_test.shape == (360, 8, 8, 1)
  assert ds.num_classes == 10
  assert ds.y_train.min() == 0 and ds.y_train.max() == 9

  ref = load_digits()
  images = ref.images.astype(np.float32)[..., None]
  train_idx, test_idx = builders.digits_split(len(ref.target))
  all_labels = np.concatenate([ds.y_train, ds.y_test])
  np.testing.assert_array_equal(np.bincount(all_labels), np.bincount(ref.target))

  # Per-channel standardization with train stats; undoing it gives sklearn's pixels back.
  mean, std = feature_stats(images[train_idx])
  assert mean.shape == (1, 1, 1, 1)
  for x, idx, y in ((ds.x_train, train_idx, ds.y_train), (ds.x_test, test_idx, ds.y_test)):
    pixels = x * std + mean
    np.testing.assert_allclose(pixels, np.round(pixels), atol=1e-3)
    np.testing.assert_array_equal(
      _sorted_rows(np.round(pixels), y), _sorted_rows(images[idx], ref.target[idx])
    )


# ----------------------------------------------------------------------------- catalog


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_catalog_name_offline_gives_clean_error(name, tmp_path, monkeypatch):
  calls = []

  def offline(self, *args, **kwargs):
    calls.append(self.name)
    raise ConnectionError("simulated: network is unreachable")

  monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
  # Past the fast offline check (tests/test_offline_data.py), to the download itself.
  from gradlab.data import offline as offline_check

  monkeypatch.setattr(offline_check, "preparation_blocker", lambda builder: None)
  with pytest.raises(DatasetUnavailableError) as err:
    load_dataset(name, data_dir=tmp_path)
  assert calls == [name]
  assert isinstance(err.value, ConfigError)
  assert str(err.value).startswith(
    f"dataset '{name}' is not prepared in {tmp_path} and could not be downloaded"
  )
  assert "ConnectionError: simulated: network is unreachable" in str(err.value)
  assert err.value.__suppress_context__  # no chained traceback


# ----------------------------------------------------------------------------- synthetic


@pytest.mark.parametrize("name,dim", [("teacher", 32), ("gaussian_blobs", 16)])
def test_synthetic_tasks(name, dim):
  ds = load_dataset(name)
  assert ds.x_train.shape == (2048, dim) and ds.x_test.shape == (512, dim)
  assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int32
  assert ds.num_classes == 10
  counts = np.bincount(ds.y_train, minlength=10)
  assert (counts > 0).sum() >= 8 and counts.max() < 0.5 * len(ds.y_train)
  np.testing.assert_allclose(ds.x_train.mean(axis=0), 0.0, atol=1e-5)

  # Labels depend on x: nearest train-class-centroid beats chance (0.1) on test by far.
  centroids = np.stack([ds.x_train[ds.y_train == k].mean(axis=0) for k in range(10)])
  dist = ((ds.x_test[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
  assert (dist.argmin(axis=1) == ds.y_test).mean() > 0.4

  again, other = load_dataset(name, seed=0), load_dataset(name, seed=1)
  np.testing.assert_array_equal(ds.x_train, again.x_train)
  np.testing.assert_array_equal(ds.y_train, again.y_train)
  assert not np.array_equal(ds.y_train, other.y_train)


# ----------------------------------------------------------------------------- sampling


N, D = 50, 3
X = jnp.arange(N * D, dtype=jnp.float32).reshape(N, D)  # row i is unique ...
Y = jnp.arange(N, dtype=jnp.int32)  # ... and its label is its index


def test_sample_batch_jit_vmap_rows_come_from_data():
  keys = jax.random.split(jax.random.key(0), 8)
  sample = jax.jit(jax.vmap(functools.partial(sample_batch, batch_size=16), (0, None, None)))
  xb, yb = sample(keys, X, Y)
  assert xb.shape == (8, 16, D) and yb.shape == (8, 16)
  assert int(yb.min()) >= 0 and int(yb.max()) < N
  np.testing.assert_array_equal(xb, X[yb])  # every row is the data row with its label
  assert len({tuple(np.asarray(lane)) for lane in yb}) == 8  # different keys, batches
  # Lane i of the vmapped call equals the single call with key i.
  x3, y3 = sample_batch(keys[3], X, Y, 16)
  np.testing.assert_array_equal(x3, xb[3])
  np.testing.assert_array_equal(y3, yb[3])


def test_sample_batch_is_uniform_with_replacement():
  _, yb = sample_batch(jax.random.key(1), X, Y, 2 * N)  # batch larger than N still samples
  assert yb.shape == (2 * N,)
  assert len(np.unique(yb)) < 2 * N  # with replacement
  _, yb = sample_batch(jax.random.key(2), X, Y, 50_000)
  counts = np.bincount(np.asarray(yb), minlength=N)
  np.testing.assert_allclose(counts / 50_000, 1 / N, rtol=0.15)


@pytest.mark.parametrize("batch_size", [0, -1])
def test_sample_batch_full_batch(batch_size):
  xb, yb = sample_batch(jax.random.key(0), X, Y, batch_size)
  assert xb is X and yb is Y
  xj, yj = jax.jit(lambda k: sample_batch(k, X, Y, batch_size))(jax.random.key(0))
  np.testing.assert_array_equal(xj, X)
  np.testing.assert_array_equal(yj, Y)
