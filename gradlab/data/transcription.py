"""Speech recognition tasks for CTC (`gradlab.ctc`): log-mel frames in, symbol strings out.

Both datasets give x float32 (N, T, D) log-mel frames (`gradlab.data.audio.log_mel`,
standardized per band with train statistics) and y int32 (N, L) symbol ids, right-padded
with -1; id 0 is CTC's blank, so ``num_classes`` = symbols + 1 and the model reads it
with ``model.readout = 'every'`` (logits (B, T, K + 1)). Every clip of a dataset has the
same T frames; the task's chance level is the loss of the best constant predictor at
that T (`gradlab.ctc.constant_predictor_loss`).

- ``tone_transcription`` (offline, generated in numpy at load from ``TONES_SEED``): 1 s
  clips at 8 kHz holding 1 to ``MAX_TONES`` = 5 tones in white noise, each tone one of
  ``NUM_PITCHES`` = 8 pitch classes (250 Hz x 2^(k/3), a major third apart, detuned by up
  to 2%); the target is the string of pitch classes in order (ids 1..8), so the same pitch twice
  in a row is two symbols (CTC needs a blank between them: the silence between tones).
  Tone lengths and gaps are random, so the alignment is unknown. 61 frames x 32 bands
  (16 ms hop); 2000 train / 500 test clips.
- ``librispeech`` (TFDS catalog; Panayotov et al. 2015, "LibriSpeech: an ASR corpus
  based on public domain audio books"): 16 kHz int16 ``speech`` and its ``text``,
  'train_clean100' as train and 'test_clean' as test. Features: 25 ms frames (400
  samples) every 10 ms (160), 80 mel bands (the usual ASR front end), then
  ``data.frame_stack`` consecutive frames stacked into one step, stride = stack (a
  simpler form of the frame stacking and decimation of Sak et al. 2015, "Fast and
  accurate recurrent neural network acoustic models for speech recognition": 8 frames
  stacked every 30 ms). Clips are zero-padded to
  ``data.clip_seconds`` (silence, which CTC labels with blanks); clips longer than that,
  transcripts longer than ``data.max_chars`` and transcripts CTC cannot align within
  the frames are DROPPED (not cropped: a cropped clip's transcript would name words it
  does not hold). ``data.max_utterances`` (0: all) keeps the first N train utterances
  (the whole split is held in memory: 28,539 utterances at 15 s and stack 3 are ~14 GB
  of float32 features). Text: lower-cased, characters outside ``ALPHABET`` dropped.
  Reading needs TensorFlow (TFDS's Audio feature imports it) and the prepared dataset
  in ``data.data_dir``; ``data.mock = N`` instead decodes N records per split generated
  from ``LIBRISPEECH_FEATURES`` (the catalog builder's features: TFDS's own mock cannot
  build it without TensorFlow) through the same decoding as the real records.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterable
from typing import Any

import numpy as np

from gradlab.config import register_keys
from gradlab.ctc import BLANK, constant_predictor_loss
from gradlab.data import mock
from gradlab.data.audio import features
from gradlab.data.loader import (
  CATALOG_LOADERS,
  DATASETS,
  DataDir,
  Dataset,
  DatasetUnavailableError,
  Task,
  iter_records,
  make_dataset,
  prepared_builder,
)

TRANSCRIPTION_KEYS: dict[str, Any] = register_keys("data", dict(
  clip_seconds=15.0,   # librispeech: clips zero-padded to this; longer ones dropped
  max_chars=256,       # librispeech: label length L; longer transcripts dropped
  frame_stack=3,       # librispeech: frames stacked per step (stride = stack)
  max_utterances=0,    # librispeech: first N train utterances (0: all)
), family="transcription", positive=("clip_seconds", "max_chars", "frame_stack"),
  non_negative=("max_utterances",))

_log = logging.getLogger(__name__)
_CHUNK = 256


def ctc_task(y_train: np.ndarray, num_classes: int, num_frames: int) -> Task:
  """The CTC task at T = num_frames, its chance the best constant predictor's loss."""
  return Task("ctc", chance=constant_predictor_loss(y_train, num_classes, num_frames))


def alignable(labels: np.ndarray, num_frames: int) -> bool:
  """Whether CTC can emit `labels` (ids, no padding) in `num_frames` frames: one frame
  per symbol plus a blank between equal neighbours (Graves et al. 2006, Sec. 4.1)."""
  labels = np.asarray(labels)
  return len(labels) + int(np.sum(labels[1:] == labels[:-1])) <= num_frames


# --- tone_transcription: offline ----------------------------------------------------------

TONES_SEED = 1806
TONES_RATE = 8000                 # Hz
TONES_SAMPLES = 8000              # 1 s: 61 frames of 256 every 128 samples
TONES_TRAIN, TONES_TEST = 2000, 500
MAX_TONES = 5
NUM_PITCHES = 8
PITCH_HZ = 250.0 * 2 ** (np.arange(NUM_PITCHES) / 3)   # major thirds, 250 .. 1260 Hz
DETUNE = 0.02                     # each tone's frequency x U[1 - 2%, 1 + 2%]
MIN_GAP_S = 0.03                  # at least 30 ms of noise between tones
RAMP_S = 0.005                    # 5 ms raised-cosine on- and offsets
NOISE_STD = 0.6                   # white noise; tone amplitudes U[0.4, 1]


def _tone_layout(n_tones: int, rng: np.random.Generator) -> list[tuple[int, int]]:
  """(start, end) samples of `n_tones` tones: the clip cut into n equal slots, each tone
  U[40%, 85%] of its slot long, placed at random inside it with MIN_GAP_S to spare."""
  slot = TONES_SAMPLES / n_tones
  gap = int(MIN_GAP_S * TONES_RATE)
  out = []
  for k in range(n_tones):
    length = int(rng.uniform(0.4, 0.85) * (slot - gap))
    start = int(k * slot + gap / 2 + rng.uniform(0, slot - gap - length))
    out.append((start, start + length))
  return out


def make_tone_strings(num: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """(num, TONES_SAMPLES) float32 waveforms and int32 (num, MAX_TONES) targets (pitch
  class + 1, -1-padded); see the module docstring."""
  t = np.arange(TONES_SAMPLES) / TONES_RATE
  ramp_n = int(RAMP_S * TONES_RATE)
  ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp_n) / ramp_n)
  audio = rng.normal(0.0, NOISE_STD, (num, TONES_SAMPLES)).astype(np.float32)
  labels = np.full((num, MAX_TONES), -1, np.int32)
  for i in range(num):
    n_tones = int(rng.integers(1, MAX_TONES + 1))
    pitches = rng.integers(0, NUM_PITCHES, n_tones)
    for k, (lo, hi) in enumerate(_tone_layout(n_tones, rng)):
      f = PITCH_HZ[pitches[k]] * rng.uniform(1 - DETUNE, 1 + DETUNE)
      envelope = np.ones(hi - lo)
      envelope[:ramp_n], envelope[-ramp_n:] = ramp, ramp[::-1]
      amp, phase = rng.uniform(0.4, 1.0), rng.uniform(0, 2 * np.pi)
      audio[i, lo:hi] += amp * envelope * np.sin(2 * np.pi * f * t[lo:hi] + phase)
    labels[i, :n_tones] = pitches + 1
  return audio, labels


@DATASETS.register("tone_transcription")
def load_tone_transcription(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """Tone strings to transcribe: (N, 61, 32) log-mel frames, (N, 5) targets, 9 outputs
  (blank + 8 pitch classes). Generated from (TONES_SEED, seed); `data_dir` unused."""
  del data_dir, data_cfg
  rng = np.random.default_rng([TONES_SEED, seed])
  audio, labels = make_tone_strings(TONES_TRAIN + TONES_TEST, rng)
  x = features(audio, TONES_RATE)
  y_train, y_test = labels[:TONES_TRAIN], labels[TONES_TRAIN:]
  return make_dataset("tone_transcription", x[:TONES_TRAIN], y_train, x[TONES_TRAIN:],
                      y_test, NUM_PITCHES + 1,
                      ctc_task(y_train, NUM_PITCHES + 1, x.shape[1]))


# --- librispeech: TFDS catalog --------------------------------------------------------------

ALPHABET = " '" + "abcdefghijklmnopqrstuvwxyz"   # ids 1..28; 0 is the blank
_CHAR_IDS = {c: BLANK + 1 + i for i, c in enumerate(ALPHABET)}
LS_RATE = 16000
LS_FRAME, LS_HOP, LS_MELS = 400, 160, 80     # 25 ms, 10 ms, 80 bands
LS_SPLITS = ("train_clean100", "test_clean")  # train, test
# The catalog builder's features (tfds.builder('librispeech').info.features, TFDS 4.9):
# name -> (numpy dtype, shape); a record read from its data source is a dict of these.
LIBRISPEECH_FEATURES: dict[str, tuple[str, tuple[int | None, ...]]] = {
  "speech": ("int16", (None,)),    # Audio, 16 kHz
  "text": ("str", ()),              # Text (str or bytes when read)
  "speaker_id": ("int64", ()),
  "chapter_id": ("int64", ()),
  "id": ("str", ()),
}


def encode_text(text: str | bytes) -> np.ndarray:
  """A transcript as int32 ids in ALPHABET (lower-cased; other characters dropped)."""
  if isinstance(text, bytes | np.bytes_):
    text = text.decode("utf-8")
  return np.asarray([_CHAR_IDS[c] for c in str(text).lower() if c in _CHAR_IDS], np.int32)


def decode_ids(ids: Iterable[int]) -> str:
  """ids (-1 padding and blanks skipped) back to text."""
  return "".join(ALPHABET[i - 1] for i in ids if i > 0)


def stacked_frames(num_samples: int, stack: int) -> int:
  """Steps per clip: 1 + (samples - 400) // 160 frames, then // stack."""
  return (1 + (num_samples - LS_FRAME) // LS_HOP) // stack


def _log_mel_steps(audio_NxS: np.ndarray, stack: int) -> np.ndarray:
  """int16-scale waveforms -> (N, frames // stack, stack * 80) stacked log-mel frames."""
  x = features(audio_NxS / 32768.0, LS_RATE, LS_FRAME, LS_HOP, LS_MELS)
  steps = x.shape[1] // stack
  return x[:, :steps * stack].reshape(len(x), steps, stack * LS_MELS)


def decode_records(records: Iterable[dict[str, Any]], data_cfg: Any,
                   limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """LibriSpeech records (dicts of LIBRISPEECH_FEATURES) -> (x (N, steps, stack*80),
  y int32 (N, max_chars) -1-padded), keeping those that fit (module docstring), at most
  `limit` (0: all). The one decoding of the real and the mock records."""
  num_samples = int(round(float(data_cfg.clip_seconds) * LS_RATE))
  max_chars, stack = int(data_cfg.max_chars), int(data_cfg.frame_stack)
  steps = stacked_frames(num_samples, stack)
  xs, ys, audio, labels, dropped = [], [], [], [], 0

  def flush() -> None:
    if audio:
      xs.append(_log_mel_steps(np.stack(audio), stack))
      ys.append(np.stack(labels))
      audio.clear()
      labels.clear()

  kept = 0
  for record in records:
    speech = np.asarray(record["speech"]).astype(np.float32).ravel()
    ids = encode_text(record["text"])
    if len(speech) > num_samples or len(ids) > max_chars or not alignable(ids, steps):
      dropped += 1
      continue
    audio.append(np.pad(speech, (0, num_samples - len(speech))))
    labels.append(np.pad(ids, (0, max_chars - len(ids)), constant_values=-1))
    kept += 1
    if len(audio) == _CHUNK:
      flush()
    if kept == limit:
      break
  flush()
  if dropped:
    _log.warning("librispeech: dropped %d utterances longer than data.clip_seconds=%s or "
                 "data.max_chars=%d", dropped, data_cfg.clip_seconds, max_chars)
  if not xs:
    raise DatasetUnavailableError(
      f"librispeech: no utterance fits data.clip_seconds={data_cfg.clip_seconds} and "
      f"data.max_chars={max_chars}")
  return np.concatenate(xs), np.concatenate(ys)


def mock_records(n: int, split: str, num_samples: int, max_tokens: int) -> list[dict[str, Any]]:
  """`n` records of LIBRISPEECH_FEATURES for `split`, drawn deterministically: int16
  noise of U[1/4, 1] x num_samples samples and an upper-case transcript (as LibriSpeech
  spells them) of random words over ALPHABET, at most `max_tokens` characters."""
  rng = np.random.default_rng([n, LS_SPLITS.index(split) if split in LS_SPLITS else 9])
  letters = np.asarray(list(ALPHABET[1:].upper()))
  out = []
  for i in range(n):
    length = int(rng.integers(num_samples // 4, num_samples + 1))
    words = ["".join(rng.choice(letters, int(rng.integers(1, 6)))) for _ in range(8)]
    text = " ".join(words)[:int(rng.integers(1, max_tokens + 1))].strip() or "A"
    out.append({"speech": rng.normal(0, 1000, length).clip(-32768, 32767).astype(np.int16),
                "text": text, "speaker_id": np.asarray(rng.integers(0, 1000), np.int64),
                "chapter_id": np.asarray(rng.integers(0, 1000), np.int64),
                "id": f"{split}-{i}"})
  return out


def _read_librispeech(data_dir: DataDir, data_cfg: Any) -> dict[str, tuple[np.ndarray, ...]]:
  """{split: (x, y)} of LS_SPLITS: mock records under ``data.mock``, else the prepared
  TFDS builder's array_record data sources."""
  limits = {LS_SPLITS[0]: int(data_cfg.max_utterances), LS_SPLITS[1]: 0}
  if mock.active():
    num_samples = int(round(float(data_cfg.clip_seconds) * LS_RATE))
    max_tokens = min(int(data_cfg.max_chars),
                     stacked_frames(num_samples, int(data_cfg.frame_stack)) // 2)
    return {split: decode_records(mock_records(mock.active(), split, num_samples,
                                               max(max_tokens, 1)), data_cfg, limits[split])
            for split in LS_SPLITS}
  if importlib.util.find_spec("tensorflow") is None:
    raise DatasetUnavailableError(
      "dataset 'librispeech' needs tensorflow to be read (TFDS's Audio feature imports "
      "it; not a gradlab requirement): install tensorflow-cpu, prepare it once (`tfds build "
      "librispeech --file_format=array_record --data_dir=DIR`) and set "
      "--config.data.data_dir=DIR; or dry-run on generated records with --config.data.mock=8")
  builder = prepared_builder("librispeech", data_dir)
  try:
    return {split: decode_records(iter_records(builder.as_data_source(split=split)),
                                  data_cfg, limits[split]) for split in LS_SPLITS}
  except DatasetUnavailableError:
    raise
  except Exception as e:
    raise DatasetUnavailableError(
      f"dataset 'librispeech' in {builder.data_dir} could not be read as array_record: "
      f"{type(e).__name__}: {e}") from None


CATALOG_LOADERS["librispeech"] = "librispeech"  # checked before a sweep writes anything


@DATASETS.register("librispeech")
def load_librispeech(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """LibriSpeech train_clean100 / test_clean as stacked log-mel steps and character ids
  (29 outputs: blank, space, apostrophe, a-z); `seed` unused (fixed splits)."""
  del seed
  import ml_collections as mlc

  from gradlab.data.loader import DATA_KEYS

  cfg = mlc.ConfigDict({**DATA_KEYS, **TRANSCRIPTION_KEYS, **(data_cfg or {})})
  splits = _read_librispeech(data_dir, cfg)
  (x_train, y_train), (x_test, y_test) = (splits[s] for s in LS_SPLITS)
  num_classes = len(ALPHABET) + 1
  return make_dataset("librispeech", x_train, y_train, x_test, y_test, num_classes,
                      ctc_task(y_train, num_classes, x_train.shape[1]))
