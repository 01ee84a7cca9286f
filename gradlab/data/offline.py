"""Whether a TFDS catalog dataset can be prepared here, judged in seconds, not minutes.

TFDS downloads a catalog dataset (``mnist``, ``cifar10`` ...) the first time it is used
and, offline, retries each file for minutes before it fails. `preparation_blocker`
answers first, without downloading: a short TCP connection to every host the dataset
downloads from (or to the proxy that would carry it), then whether TensorFlow, which
TFDS needs to encode catalog images while preparing, is importable. `how_to_prepare` is
the one-sentence recipe for preparing it on another machine and where to copy it.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import urllib.parse
import urllib.request
from typing import Any

# Seconds one connection attempt may take before its host counts as unreachable.
CONNECT_TIMEOUT_S = 3.0

_DEFAULT_PORTS = {"https": 443, "http": 80}


def download_hosts(urls: list[str]) -> list[tuple[str, int]]:
  """The (host, port) pairs a download of `urls` connects to first: each URL's own host,
  or its scheme's proxy (``https_proxy`` ...) unless ``no_proxy`` exempts the host;
  each pair once, in first-seen order."""
  proxies = urllib.request.getproxies()
  out: list[tuple[str, int]] = []
  for url in urls:
    parts = urllib.parse.urlsplit(url)
    proxy = proxies.get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
      parts = urllib.parse.urlsplit(proxy if "//" in proxy else f"http://{proxy}")
    if not parts.hostname:
      continue
    pair = (parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme, 443))
    if pair not in out:
      out.append(pair)
  return out


def unreachable(hosts: list[tuple[str, int]], timeout_s: float = CONNECT_TIMEOUT_S
                ) -> str | None:
  """'HOST:PORT (why)' of the first of `hosts` a TCP connection cannot reach within
  `timeout_s`, or None when every one answers."""
  for host, port in hosts:
    try:
      socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
      return f"{host}:{port} ({e.strerror or type(e).__name__})"
  return None


def preparation_blocker(builder: Any) -> str | None:
  """Why the unprepared catalog `builder` cannot be downloaded and prepared here (no
  network to its download hosts, or no TensorFlow), in a few words; None when nothing
  visible stands in the way. Costs at most a few seconds per download host."""
  try:
    urls = sorted(builder.url_infos or {})
  except Exception:  # noqa: BLE001 - a builder without a checksums file lists no URLs
    urls = []
  down = unreachable(download_hosts(urls))
  if down is not None:
    return f"no network: cannot reach {down}"
  if importlib.util.find_spec("tensorflow") is None:
    return "tensorflow is not installed, and TFDS needs it to prepare catalog images"
  return None


def how_to_prepare(tfds_name: str, data_dir_root: str) -> str:
  """The recipe, in one sentence: prepare `tfds_name` on a machine with network and
  TensorFlow, then copy it under `data_dir_root` (this machine's data dir)."""
  root = os.fspath(data_dir_root)
  code = (f"import tensorflow_datasets as tfds; tfds.builder('{tfds_name}', data_dir='DIR', "
          f"file_format='array_record').download_and_prepare()")
  return (f"prepare it on a machine with network and tensorflow (`tfds build {tfds_name} "
          f"--file_format=array_record --data_dir=DIR` or `python -c \"{code}\"`), then copy "
          f"DIR/{tfds_name} to {os.path.join(root, tfds_name)} here (or set "
          f"--config.data.data_dir to a folder holding it)")
