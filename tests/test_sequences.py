"""Sequence tasks: each generator's documented target, chance levels, log-mel features."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from gradlab.data import DATASETS, audio, sequences
from gradlab.registry import ConfigError


def _cfg(seq_len):
  return mlc.ConfigDict(dict(seq_len=seq_len))


def test_adding_target_is_the_sum_of_the_two_marked_values():
  x, y = sequences.adding_sampler(30)(jax.random.PRNGKey(3), 512)
  x, y = np.asarray(x), np.asarray(y)
  marks = x[..., 1]
  assert x.shape == (512, 30, 2) and y.shape == (512, 1)
  np.testing.assert_array_equal(marks.sum(1), 2.0)
  assert np.all(marks[:, :15].sum(1) == 1) and np.all(marks[:, 15:].sum(1) == 1)
  idx = np.argwhere(marks == 1).reshape(512, 2, 2)[:, :, 1]
  expected = x[np.arange(512), idx[:, 0], 0] + x[np.arange(512), idx[:, 1], 0]
  np.testing.assert_allclose(y[:, 0], expected, rtol=1e-6)


def test_adding_chance_is_one_twelfth_and_matches_the_sample():
  ds = DATASETS.get("adding")(None, 0, _cfg(20))
  assert ds.task.loss == "squared_error" and ds.task.sampler is not None
  assert ds.task.chance == pytest.approx(1 / 12)
  # the best constant (the mean) on 1024 draws: 0.5 Var[y] ~ 1/12 within sampling error
  assert 0.5 * ds.y_train.var() == pytest.approx(1 / 12, rel=0.12)


def test_copy_labels_are_the_copied_symbols_after_the_delimiter():
  t, k = 25, sequences.COPY_LENGTH
  x, y = sequences.copy_sampler(t)(jax.random.PRNGKey(0), 64)
  tokens, y = np.asarray(x).argmax(-1), np.asarray(y)
  assert x.shape == (64, t, sequences.COPY_SYMBOLS + 2)
  np.testing.assert_array_equal(y[:, -k:], tokens[:, :k])
  assert np.all(y[:, :-k] == -1)
  assert np.all(tokens[:, t - k - 1] == sequences.COPY_SYMBOLS + 1)        # delimiter
  assert np.all(tokens[:, k:t - k - 1] == sequences.COPY_SYMBOLS)         # blanks
  assert np.all(tokens[:, :k] < sequences.COPY_SYMBOLS)
  ds = DATASETS.get("copy")(None, 0, _cfg(t))
  assert ds.task.chance == pytest.approx(math.log(8)) and ds.num_classes == 8


def test_temporal_order_class_matches_the_symbol_pair():
  t = 50
  x, y = sequences.temporal_order_sampler(t)(jax.random.PRNGKey(1), 400)
  tokens, y = np.asarray(x).argmax(-1), np.asarray(y)
  (lo1, hi1), (lo2, hi2) = sequences.temporal_order_positions(t)
  assert tokens[0, 0] == 6 and np.all(tokens[:, 0] == 6) and np.all(tokens[:, -1] == 7)
  for row, label in zip(tokens, y, strict=True):
    where = np.flatnonzero((row == 4) | (row == 5))
    assert len(where) == 2 and lo1 <= where[0] <= hi1 and lo2 <= where[1] <= hi2
    assert label == 2 * (row[where[0]] == 5) + (row[where[1]] == 5)
  assert set(np.unique(y)) == {0, 1, 2, 3}


def test_seq_len_too_short_is_a_config_error_naming_the_key():
  with pytest.raises(ConfigError, match="data.seq_len"):
    DATASETS.get("copy")(None, 0, _cfg(6))


def test_mel_scale_and_a_pure_tone_peaks_in_its_mel_band():
  assert audio.hz_to_mel(700.0) == pytest.approx(2595 * math.log10(2))
  assert audio.mel_to_hz(audio.hz_to_mel(1234.5)) == pytest.approx(1234.5)
  rate, n = 8000, 4000
  centers = audio.mel_centers_hz(rate)
  for f0 in (300.0, 1000.0, 2500.0):
    wave = jnp.sin(2 * jnp.pi * f0 * jnp.arange(n) / rate)[None]
    feats = np.asarray(audio.log_mel(wave, rate))
    assert feats.shape == (1, audio.num_frames(n), audio.N_MELS)
    peak = np.bincount(feats[0].argmax(-1)).argmax()
    assert peak == np.abs(centers - f0).argmin(), (f0, centers[peak])


def test_tone_contours_are_the_binary_patterns():
  from gradlab.data.audio_builders import make_tones, tone_contours

  np.testing.assert_array_equal(tone_contours()[5], [1, 0, 1])
  x, y = make_tones(8, np.random.default_rng(0))
  assert x.shape == (8, 4000) and x.dtype == np.float32 and y.max() < 8
