"""A catalog dataset that is not prepared and cannot be downloaded fails within seconds,
saying how to prepare it elsewhere and where to copy it (TFDS alone retries for minutes)."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO

from gradlab.data import load_dataset
from gradlab.data.loader import DatasetUnavailableError
from gradlab.data.offline import download_hosts


@pytest.fixture
def no_network(monkeypatch):
  """Every TCP connection fails at once (socket.create_connection, requests, urllib3 all
  end in socket.connect), as on a machine without network."""
  def refuse(self, address):
    raise OSError(errno.ENETUNREACH, "Network is unreachable")

  monkeypatch.setattr(socket.socket, "connect", refuse)
  for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy",
              "ALL_PROXY"):
    monkeypatch.delenv(var, raising=False)


def test_unprepared_catalog_dataset_offline_fails_fast(tmp_path, no_network):
  data_dir = tmp_path / "tfds"
  start = time.monotonic()
  with pytest.raises(DatasetUnavailableError) as info:
    load_dataset("mnist", str(data_dir))
  elapsed = time.monotonic() - start
  message = str(info.value)
  assert elapsed < 10, f"took {elapsed:.1f}s"
  assert "\n" not in message
  assert f"is not prepared in {data_dir}" in message and "no network" in message
  assert "tfds build mnist --file_format=array_record --data_dir=DIR" in message
  assert f"copy DIR/mnist to {data_dir / 'mnist'}" in message


def test_download_hosts_go_through_a_proxy(monkeypatch):
  urls = ["https://storage.googleapis.com/a", "https://storage.googleapis.com/b",
          "http://example.org:8080/c"]
  for var in ("no_proxy", "NO_PROXY", "http_proxy", "HTTP_PROXY"):
    monkeypatch.delenv(var, raising=False)
  monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
  assert download_hosts(urls) == [("127.0.0.1", 9), ("example.org", 8080)]


def test_sweep_offline_fails_fast_before_writing(tmp_path):
  """The command line, its network cut by a proxy that refuses every connection: one
  line, exit status 2, within seconds, and no workdir made."""
  env = {**os.environ, "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9",
         "no_proxy": ""}
  wd, data_dir = tmp_path / "wd", tmp_path / "tfds"
  start = time.monotonic()
  out = subprocess.run(
    [sys.executable, "-m", "experiments.sweep", "--config=configs/smoke.py", f"--workdir={wd}",
     "--quiet", "--config.data.name=mnist", f"--config.data.data_dir={data_dir}"],
    cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  elapsed = time.monotonic() - start
  assert out.returncode == 2 and elapsed < 10, (elapsed, out.stderr[-2000:])
  [line] = out.stderr.strip().splitlines()
  assert line.startswith("error: dataset 'mnist' is not prepared in") and "tfds build" in line
  assert not wd.exists()
