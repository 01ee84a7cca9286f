"""gradlab's offline audio TFDS builder: ``gradlab_tones``, noisy sequences of tones.

Importing this module registers ``gradlab_tones`` with TFDS (``gradlab.data.audio``
imports it lazily). Waveforms are stored raw (float32, 8 kHz); `gradlab.data.audio`
computes log-mel features from them at load, with the same code as for spoken_digit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from gradlab.data.builders import _OfflineBuilder

TONES_RATE = 8000          # Hz
TONES_SAMPLES = 4000       # 0.5 s
TONES_TRAIN, TONES_TEST = 1600, 400
TONES_SEED = 0
NUM_TONES = 3
HIGH_RATIO = 1.5           # a high tone is a fifth above the example's base pitch
BASE_HZ = (250.0, 700.0)
NOISE_STD = 0.5            # white noise; tone amplitudes are U[0.5, 1]


def tone_contours(num_classes: int = 2 ** NUM_TONES) -> np.ndarray:
  """(classes, NUM_TONES) 0/1: class c's tone i is high iff bit (NUM_TONES - 1 - i) of c
  is set (class 0 = low-low-low, 5 = high-low-high, 7 = high-high-high)."""
  bits = np.arange(NUM_TONES)[::-1]
  return (np.arange(num_classes)[:, None] >> bits[None, :]) & 1


def make_tones(num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(num, TONES_SAMPLES) float32 waveforms and their int labels (see module docstring
  of `gradlab.data.audio`). Each example: a base pitch f_b ~ U[250, 700] Hz; three tones
  of nominal length 1/3 of the clip whose boundaries are jittered by up to +-10% of the
  clip, each at f_b or 1.5 f_b (the class's contour) with a random phase and amplitude
  U[0.5, 1], separated by 10 ms silences; plus N(0, 0.5^2) white noise."""
  labels = rng.integers(0, 2 ** NUM_TONES, num)
  contours = tone_contours()[labels]
  t = np.arange(TONES_SAMPLES) / TONES_RATE
  gap = TONES_RATE // 100
  out = np.empty((num, TONES_SAMPLES), np.float32)
  for i in range(num):
    base = rng.uniform(*BASE_HZ)
    jitter = rng.uniform(-0.1, 0.1, NUM_TONES - 1) * TONES_SAMPLES
    cuts = (np.arange(1, NUM_TONES) * TONES_SAMPLES / NUM_TONES + jitter).astype(int)
    bounds = np.concatenate([[0], cuts, [TONES_SAMPLES]])
    x = rng.normal(0.0, NOISE_STD, TONES_SAMPLES)
    for k in range(NUM_TONES):
      lo, hi = bounds[k] + gap // 2, bounds[k + 1] - gap // 2
      f = base * (HIGH_RATIO if contours[i, k] else 1.0)
      amp, phase = rng.uniform(0.5, 1.0), rng.uniform(0, 2 * np.pi)
      x[lo:hi] += amp * np.sin(2 * np.pi * f * t[lo:hi] + phase)
    out[i] = x
  return out, labels


class GradlabTones(_OfflineBuilder):
  """Noisy three-tone sequences at 8 kHz, 0.5 s, 8 contour classes (generated offline,
  seed ``TONES_SEED``): 1600 train / 400 test."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "three tones, low/high contour classes, 8 kHz, 0.5 s."}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
      description="Noisy sequences of three tones; the class is the low/high contour.",
      features=tfds.features.FeaturesDict({
        "audio": tfds.features.Tensor(shape=(TONES_SAMPLES,), dtype=np.float32),
        "label": tfds.features.ClassLabel(num_classes=2 ** NUM_TONES),
      }),
      supervised_keys=("audio", "label"),
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict[str, Any]:
    del dl_manager  # nothing to download
    rng = np.random.default_rng(TONES_SEED)
    x, y = make_tones(TONES_TRAIN + TONES_TEST, rng)
    return {
      "train": self._generate_examples(x[:TONES_TRAIN], y[:TONES_TRAIN], "audio"),
      "test": self._generate_examples(x[TONES_TRAIN:], y[TONES_TRAIN:], "audio"),
    }
