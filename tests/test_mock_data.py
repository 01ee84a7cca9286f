"""data.mock: TFDS catalog datasets through the real reading path with generated examples."""

from __future__ import annotations

import ml_collections as mlc
import numpy as np
from conftest import run_cli

from gradlab import results
from gradlab.data import load_dataset
from gradlab.data.loader import DATA_KEYS


def _mock(name: str, n: int, data_dir: str):
  return load_dataset(name, data_dir, data_cfg=mlc.ConfigDict(dict(DATA_KEYS, name=name,
                                                                   mock=n)))


def test_mock_mnist_has_the_datasets_shapes_and_classes(tmp_path):
  """mnist as 32 mock examples per split, read from an EMPTY data dir: MNIST's own
  feature shape (28, 28, 1) and 10 classes, standardized with train statistics, the
  same draws on a second load."""
  ds = _mock("mnist", 32, str(tmp_path))
  assert ds.x_train.shape == (32, 28, 28, 1) and ds.x_test.shape == (32, 28, 28, 1)
  assert ds.num_classes == 10
  assert ds.y_train.min() >= 0 and ds.y_train.max() < 10
  np.testing.assert_allclose([ds.x_train.mean(), ds.x_train.std()], [0.0, 1.0], atol=1e-3)
  again = _mock("mnist", 32, str(tmp_path))
  np.testing.assert_array_equal(ds.x_train, again.x_train)
  np.testing.assert_array_equal(ds.y_train, again.y_train)
  assert not list(tmp_path.iterdir())  # nothing downloaded or prepared


def test_a_catalog_config_runs_end_to_end_on_mock_data(tmp_path):
  """cifar10 cannot be downloaded here; with --config.data.mock=64 the same sweep runs
  through the real TFDS reading path and writes every row."""
  wd = str(tmp_path / "wd")
  args = ["experiments.sweep", "--config=configs/smoke.py",
          f"--workdir={wd}", "--quiet", "--config.data.name=cifar10",
          f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.model.name=cnn",
          "--config.model.depth=2", "--config.model.width=4", "--config.train.steps=20",
          "--config.train.log_every=10"]
  refused = run_cli(*args)
  assert refused.returncode == 2 and "cifar10" in refused.stderr
  out = run_cli(*args, "--config.data.mock=64")
  assert out.returncode == 0, out.stderr[-3000:]
  rows = results.load(wd)
  assert len(rows) == 12 and rows["final_loss"].notna().all()
