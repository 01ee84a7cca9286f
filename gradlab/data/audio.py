"""A speech task: log-mel features computed in JAX, for TFDS `spoken_digit` (real, needs
the network) and gradlab's offline `gradlab_tones` (noisy tone sequences).

    log_mel(audio_BxN, sample_rate) -> (B, frames, n_mels)

Features: frames of `FRAME_LENGTH` samples every `HOP` samples (gathered by index), a
Hann window, the power spectrum |rfft|^2, a triangular mel filterbank, log(. + eps).
The mel scale is the HTK one, m(f) = 2595 log10(1 + f / 700) (O'Shaughnessy 1987,
"Speech communication: human and machine", p. 150; Young et al., "The HTK Book",
Sec. 5.4, eq. 5.13): filter centres are equally spaced in m between 0 and the Nyquist
frequency, each filter rising linearly (in Hz) from the previous centre to its own and
falling to the next.

Where features are computed: ON THE HOST, ONCE, AT LOAD (the same jitted JAX function,
on the default device), then standardized per mel band with train statistics. The
features of an example never change (no augmentation), so computing them per minibatch
inside the scan would redo identical work every step and keep the raw audio (8000
samples per example instead of 61 x 32 features) on device. The model sees (T, n_mels)
sequences, T = frames.

Datasets:
- ``tones`` (offline; builder ``gradlab_tones`` in `gradlab.data.audio_builders`): 8 kHz,
  0.5 s: three consecutive tones, each at a low f_b or high 1.5 f_b pitch (f_b drawn
  per example in [250, 700] Hz), in white noise. Class = the contour (low/high of the
  three tones, 8 classes): it is relative, so the network must compare the tones across
  time. 30 frames x 32 mel bands; chance log 8.
- ``spoken_digit`` (TFDS catalog, Jackson et al., Free Spoken Digit Dataset; 2500
  recordings at 8 kHz, one 'train' split): cropped or zero-padded to 1 s, 61 frames x
  32 bands; a fixed permutation (seed 0) holds out 500 as test. Preparing it downloads
  the recordings and walks them with TensorFlow's gfile: prepare it once where network
  and tensorflow are available (``tfds build spoken_digit --file_format=array_record
  --data_dir=DIR``) and point ``data.data_dir`` at DIR; reading needs neither.
"""

from __future__ import annotations

import io
import wave
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab.data.loader import (
  DATASETS,
  DataDir,
  Dataset,
  iter_records,
  make_dataset,
  read_splits,
)

FRAME_LENGTH = 256     # samples per frame: 32 ms at 8 kHz
HOP = 128              # samples between frames: 16 ms at 8 kHz
N_MELS = 32
LOG_EPS = 1e-6
SPOKEN_DIGIT_SAMPLES = 8000    # 1 s at 8 kHz
SPOKEN_DIGIT_NUM_TEST = 500
_CHUNK = 256


def hz_to_mel(f_hz: Any) -> Any:
  """HTK mel scale: m = 2595 log10(1 + f / 700) (O'Shaughnessy 1987)."""
  return 2595.0 * np.log10(1.0 + np.asarray(f_hz, np.float64) / 700.0)


def mel_to_hz(m: Any) -> Any:
  """Inverse of `hz_to_mel`: f = 700 (10^(m / 2595) - 1)."""
  return 700.0 * (10.0 ** (np.asarray(m, np.float64) / 2595.0) - 1.0)


def mel_centers_hz(sample_rate: int, n_mels: int = N_MELS) -> np.ndarray:
  """The n_mels filter centres (Hz), equally spaced in mel over (0, sample_rate / 2)."""
  edges = np.linspace(0.0, hz_to_mel(sample_rate / 2.0), n_mels + 2)
  return mel_to_hz(edges[1:-1])


def mel_filterbank(sample_rate: int, n_fft: int = FRAME_LENGTH, n_mels: int = N_MELS
                   ) -> np.ndarray:
  """(n_fft // 2 + 1, n_mels) triangular filters on the rfft bins: filter j rises from
  edge j to its centre j + 1 and falls to edge j + 2 (edges equally spaced in mel)."""
  edges_hz = mel_to_hz(np.linspace(0.0, hz_to_mel(sample_rate / 2.0), n_mels + 2))
  bins_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)[:, None]
  lo, mid, hi = edges_hz[None, :-2], edges_hz[None, 1:-1], edges_hz[None, 2:]
  up = (bins_hz - lo) / (mid - lo)
  down = (hi - bins_hz) / (hi - mid)
  return np.maximum(0.0, np.minimum(up, down)).astype(np.float32)


def num_frames(num_samples: int, frame_length: int = FRAME_LENGTH, hop: int = HOP) -> int:
  return 1 + (num_samples - frame_length) // hop


def log_mel(audio_BxN: jax.Array, sample_rate: int, frame_length: int = FRAME_LENGTH,
            hop: int = HOP, n_mels: int = N_MELS) -> jax.Array:
  """(B, N) waveforms -> (B, frames, n_mels) log-mel energies (see module docstring)."""
  n = audio_BxN.shape[-1]
  idx_FxL = hop * np.arange(num_frames(n, frame_length, hop))[:, None] + np.arange(
    frame_length)[None, :]
  window = jnp.asarray(np.hanning(frame_length + 1)[:-1], jnp.float32)  # periodic Hann
  frames_BxFxL = audio_BxN[..., idx_FxL] * window
  power_BxFxK = jnp.abs(jnp.fft.rfft(frames_BxFxL, n=frame_length, axis=-1)) ** 2
  mel_BxFxM = power_BxFxK @ jnp.asarray(mel_filterbank(sample_rate, frame_length, n_mels))
  return jnp.log(mel_BxFxM + LOG_EPS)


def features(audio_NxS: np.ndarray, sample_rate: int, frame_length: int = FRAME_LENGTH,
             hop: int = HOP, n_mels: int = N_MELS) -> np.ndarray:
  """log_mel of many waveforms on the default device, in chunks; float32 numpy out."""
  fn = jax.jit(lambda a: log_mel(a, sample_rate, frame_length, hop, n_mels))
  out = [np.asarray(fn(jnp.asarray(audio_NxS[i:i + _CHUNK], jnp.float32)))
         for i in range(0, len(audio_NxS), _CHUNK)]
  return np.concatenate(out).astype(np.float32)


def _waveform(value: Any, num_samples: int) -> np.ndarray:
  """A record's audio as float32 of exactly num_samples (cropped or zero-padded);
  encoded wav bytes are decoded with the standard library."""
  if isinstance(value, bytes | np.bytes_):
    with wave.open(io.BytesIO(value)) as w:
      value = np.frombuffer(w.readframes(w.getnframes()), np.int16)
  x = np.asarray(value, np.float32).ravel()[:num_samples]
  return np.pad(x, (0, num_samples - len(x)))


def _read_audio(source: Any, num_samples: int) -> tuple[np.ndarray, np.ndarray]:
  records = list(iter_records(source, _CHUNK))
  return (np.stack([_waveform(r["audio"], num_samples) for r in records]),
          np.asarray([int(r["label"]) for r in records], np.int32))


@DATASETS.register("tones")
def load_tones(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """gradlab_tones as log-mel sequences (N, 30, 32); fixed splits, `seed` unused."""
  del seed, data_cfg
  from gradlab.data.audio_builders import (  # registers gradlab_tones
    TONES_RATE,
    TONES_SAMPLES,
  )

  splits, _ = read_splits("gradlab_tones", data_dir, "tones",
                          lambda source, info: _read_audio(source, TONES_SAMPLES))
  (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
  return make_dataset("tones", features(x_train, TONES_RATE), y_train,
                      features(x_test, TONES_RATE), y_test, 8)


@DATASETS.register("spoken_digit")
def load_spoken_digit(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """TFDS spoken_digit as log-mel sequences (N, 61, 32); `seed` unused (fixed split)."""
  del seed, data_cfg
  splits, _ = read_splits("spoken_digit", data_dir, "spoken_digit",
                          lambda source, info: _read_audio(source, SPOKEN_DIGIT_SAMPLES))
  audio, labels = splits["train"]
  perm = np.random.default_rng(0).permutation(len(labels))
  test, train = perm[:SPOKEN_DIGIT_NUM_TEST], perm[SPOKEN_DIGIT_NUM_TEST:]
  x = features(audio, 8000)
  return make_dataset("spoken_digit", x[train], labels[train], x[test], labels[test], 10)
