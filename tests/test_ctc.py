"""CTC (gradlab.ctc), the transcription datasets and the bidirectional RNN: the loss
against hand-enumerated alignments, greedy decoding and edit distances on hand-made
sequences, padding invariance, the constant predictor's chance level against a grid
search, and configs/speech_ctc.py from the CLI (offline tones; LibriSpeech as mock)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest
from conftest import run_cli

from gradlab import ctc, results
from gradlab.data import load_dataset
from gradlab.data.loader import DATA_KEYS
from gradlab.data.transcription import (
  ALPHABET,
  LIBRISPEECH_FEATURES,
  TRANSCRIPTION_KEYS,
  alignable,
  decode_ids,
  decode_records,
  encode_text,
  mock_records,
)
from gradlab.losses import LOSSES
from gradlab.models.rnn import build_rnn


def _softmax(logits: np.ndarray) -> np.ndarray:
  e = np.exp(logits - logits.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def _path_prob(probs_TxK: np.ndarray, paths: list[tuple[int, ...]]) -> float:
  return sum(float(np.prod([probs_TxK[t, k] for t, k in enumerate(p)])) for p in paths)


def test_ctc_loss_is_the_per_token_nll_of_the_hand_enumerated_alignments():
  """T = 3 frames, blank 0. Target [1, 2] has 5 alignments (1 1 2, 1 2 2, 0 1 2, 1 0 2,
  1 2 0); target [1] has 6 (1 0 0, 0 1 0, 0 0 1, 1 1 0, 0 1 1, 1 1 1). The batch loss is
  (-ln p_a - ln p_b) / (2 + 1) tokens, through the registered 'ctc' loss."""
  logits = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (2, 3, 3)) * 2.0)
  probs = _softmax(logits.astype(np.float64))
  p_a = _path_prob(probs[0], [(1, 1, 2), (1, 2, 2), (0, 1, 2), (1, 0, 2), (1, 2, 0)])
  p_b = _path_prob(probs[1], [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1),
                              (1, 1, 1)])
  labels = jnp.asarray([[1, 2], [1, -1]])
  got = float(LOSSES.get("ctc").fn(jnp.asarray(logits), labels))
  np.testing.assert_allclose(got, (-np.log(p_a) - np.log(p_b)) / 3.0, rtol=1e-5)
  # the same by brute force over all 27 paths, collapsing with Graves et al.'s B
  def collapse(path):
    return tuple(k for k, _ in itertools.groupby(path) if k != ctc.BLANK)
  every = list(itertools.product(range(3), repeat=3))
  assert np.isclose(_path_prob(probs[0], [p for p in every if collapse(p) == (1, 2)]), p_a)
  np.testing.assert_allclose(np.asarray(ctc.ctc_per_example(jnp.asarray(logits), labels)),
                             [-np.log(p_a), -np.log(p_b)], rtol=1e-5)


def test_padding_changes_neither_the_loss_nor_the_error_rate():
  logits = jax.random.normal(jax.random.PRNGKey(0), (3, 12, 5))
  labels = jnp.asarray([[1, 2, 2], [4, -1, -1], [3, 1, -1]])
  padded = jnp.concatenate([labels, jnp.full((3, 4), -1)], axis=1)
  assert float(ctc.ctc_loss(logits, labels)) == pytest.approx(
    float(ctc.ctc_loss(logits, padded)), rel=1e-6)
  assert float(ctc.error_rate(logits, labels)) == float(ctc.error_rate(logits, padded))


def _pad(ids, n):
  return jnp.asarray(list(ids) + [-1] * (n - len(ids)), jnp.int32)


def test_greedy_decoding_merges_repeats_then_drops_blanks():
  """Frames 0 1 1 0 1 2 2 0 3 0 decode to 1 1 2 3: the blank between the two 1s keeps
  both; the repeated 2 2 is one symbol."""
  frames = jnp.asarray([[0, 1, 1, 0, 1, 2, 2, 0, 3, 0], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]])
  decoded = ctc.greedy_decode(jax.nn.one_hot(frames, 4) * 5.0)
  np.testing.assert_array_equal(decoded[0], _pad([1, 1, 2, 3], 10))
  np.testing.assert_array_equal(decoded[1], _pad([], 10))


@pytest.mark.parametrize("hyp, ref, distance", [
  ([1, 2, 3], [1, 2, 3], 0),
  ([1, 4, 3], [1, 2, 3], 1),        # one substitution
  ([1, 2, 3, 3], [1, 2, 3], 1),     # one insertion
  ([1, 3], [1, 2, 3], 1),           # one deletion
  ([2, 1], [1, 2], 2),              # a swap costs two
  ([], [1, 2, 3], 3),               # all deleted
  ([4, 4], [], 2),                  # all inserted
  ([1, 4, 2, 3, 5], [6, 1, 2, 3], 3),  # deletion of 6, insertion of 4, insertion of 5
])
def test_edit_distance_counts_substitutions_insertions_and_deletions(hyp, ref, distance):
  assert int(ctc.edit_distance(_pad(hyp, 6), _pad(ref, 5))) == distance


def test_error_rate_sums_edits_over_target_tokens():
  """Hypotheses 1 1 2 3 (ref 1 2 3: one insertion) and 2 (ref 2 2: one deletion):
  (1 + 1) / (3 + 2) = 0.4."""
  frames = jnp.asarray([[0, 1, 0, 1, 2, 2, 0, 3], [2, 2, 2, 0, 0, 0, 0, 0]])
  labels = jnp.asarray([[1, 2, 3], [2, 2, -1]])
  rate = ctc.ctc_metrics(jax.nn.one_hot(frames, 4) * 5.0, labels)["cer"]
  assert float(rate) == pytest.approx(0.4)


def test_chance_is_the_best_constant_predictor():
  """Blank + one symbol, T = 3, targets [1] and [1, 1] equally often. With q = q(symbol):
  p([1]) = 3q(1-q)^2 + 2q^2(1-q) + q^3 (runs of 1, 2, 3 frames), p([1, 1]) = q(1-q)q
  (only 1 0 1); per-token loss (-ln p([1]) - ln p([1, 1])) / 3, minimised on a grid."""
  q = np.linspace(1e-4, 1 - 1e-4, 200001)
  one = 3 * q * (1 - q) ** 2 + 2 * q ** 2 * (1 - q) + q ** 3
  two = q * q * (1 - q)
  best = float(np.min((-np.log(one) - np.log(two)) / 3.0))
  labels = np.asarray([[1, -1], [1, 1]] * 8)
  got = ctc.constant_predictor_loss(labels, 2, 3)
  assert got == pytest.approx(best, abs=2e-3)
  assert LOSSES.get("ctc").chance(labels, 2) == np.inf  # no frame count: judge vs initial


def test_librispeech_records_decode_to_characters_and_fit_the_clip():
  """Records of the catalog's features (speech int16, text) -> stacked log-mel steps and
  character ids; a clip longer than data.clip_seconds is dropped, not cropped."""
  cfg = mlc.ConfigDict({**DATA_KEYS, **TRANSCRIPTION_KEYS, "clip_seconds": 1.0,
                        "max_chars": 20, "frame_stack": 3})
  records = mock_records(4, "train_clean100", 16000, 16)
  assert set(records[0]) == set(LIBRISPEECH_FEATURES)
  too_long = {**records[0], "speech": np.zeros(16001, np.int16), "text": "TOO LONG"}
  x, y = decode_records([*records, too_long], cfg)
  assert x.shape == (4, 32, 240) and y.shape == (4, 20)   # (1 + 15600 // 160) // 3 = 32
  assert [decode_ids(row) for row in y] == [r["text"].lower() for r in records]
  assert encode_text(b"IT'S A-B").tolist() == [11, 22, 2, 21, 1, 3, 4]
  assert len(ALPHABET) + 1 == 29
  assert alignable(np.asarray([1, 1, 2]), 4) and not alignable(np.asarray([1, 1, 2]), 3)


def test_tone_transcription_targets_are_strings_shorter_than_the_frames():
  ds = load_dataset("tone_transcription")
  assert ds.x_train.shape == (2000, 61, 32) and ds.y_train.shape == (2000, 5)
  assert ds.num_classes == 9 and ds.task.loss == "ctc"
  lengths = (ds.y_train >= 0).sum(1)
  assert lengths.min() == 1 and lengths.max() == 5
  # right-padded: no symbol after a -1; symbols are 1..8 (0 is the blank)
  assert np.all(np.diff((ds.y_train < 0).astype(int), axis=1) >= 0)
  assert set(np.unique(ds.y_train[ds.y_train >= 0])) == set(range(1, 9))
  # the chance level is below the loss of a uniform predictor
  uniform = float(ctc.ctc_loss(jnp.zeros((256, 61, 9)), jnp.asarray(ds.y_train[:256])))
  assert 0.5 < ds.task.chance < uniform


def test_bidirectional_rnn_is_symmetric_under_time_reversal():
  """Reversing the input and swapping the two directions' parameters (and the readout's
  halves) reverses the per-frame outputs; unidirectional outputs at t = 0 do not see
  the last frame, bidirectional ones do."""
  cfg = mlc.ConfigDict(dict(depth=1, width=6, activation="tanh", readout="every",
                            bidirectional=True))
  spec = build_rnn("gru", cfg, "lecun", 4)
  assert spec.layer_names == ["input_0", "recurrent_0", "input_0_bwd", "recurrent_0_bwd",
                              "readout"]
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 7, 3))
  params = spec.module.init(jax.random.PRNGKey(1), x)["params"]
  swapped = {"input_0": params["input_0_bwd"], "input_0_bwd": params["input_0"],
             "recurrent_0": params["recurrent_0_bwd"], "recurrent_0_bwd": params["recurrent_0"],
             "readout": {"bias": params["readout"]["bias"], "kernel": jnp.concatenate(
               [params["readout"]["kernel"][6:], params["readout"]["kernel"][:6]])}}
  out = spec.module.apply({"params": params}, x)
  out_rev = spec.module.apply({"params": swapped}, x[:, ::-1])
  np.testing.assert_allclose(out_rev[:, ::-1], out, atol=1e-5)
  for bidirectional, sees_last in ((False, False), (True, True)):
    cfg.bidirectional = bidirectional
    spec_b = build_rnn("gru", cfg, "lecun", 4)
    m = spec_b.module
    assert len(spec_b.layer_names) == (5 if bidirectional else 3)
    p = m.init(jax.random.PRNGKey(1), x)
    g = jax.grad(lambda xx, m=m, p=p: m.apply(p, xx)[:, 0].sum())(x)
    assert bool(jnp.any(g[:, -1] != 0)) == sees_last


def _sweep(tmp_path, name: str, *flags: str):
  wd = str(tmp_path / name)
  out = run_cli(
    "experiments.sweep", "--config=configs/speech_ctc.py",
    "--config.quick=True", f"--workdir={wd}", "--quiet", "--axis=model.name=gru",
    "--axis=init.spectral_radius=1.0", *flags)
  assert out.returncode == 0, out.stderr[-3000:]
  return results.load(wd).sort_values("optimizer.learning_rate")


def test_speech_ctc_config_trains_and_blows_up_from_the_cli(tmp_path):
  """The quick variant (bidirectional GRU, width 32) at 60 steps on tone_transcription:
  lr 0.03 trains (its symbol error rate well under 1), lr 3 explodes or diverges."""
  rows = _sweep(tmp_path, "tones", "--axis=optimizer.learning_rate=0.03,3.0",
                "--config.train.steps=60")
  good, bad = rows.iloc[0], rows.iloc[1]
  assert good["regime"] == "trained" and good["test_cer"] < 0.6
  assert good["final_loss"] < good["chance_loss"] < good["initial_loss"]
  assert bad["regime"] in ("exploding", "diverged")


def test_librispeech_runs_on_mock_records_from_the_cli(tmp_path):
  rows = _sweep(tmp_path, "ls", "--axis=optimizer.learning_rate=0.03",
                "--config.data.name=librispeech", "--config.data.mock=8",
                "--config.data.clip_seconds=1", "--config.data.max_chars=16",
                "--config.train.steps=10")
  assert len(rows) == 1 and "test_cer" in rows
  cer = rows["test_cer"].iloc[0]
  assert np.isnan(cer) or 0.0 <= cer <= 2.0
  assert np.isfinite(rows["chance_loss"].iloc[0]) and np.isfinite(rows["final_loss"].iloc[0])
