"""Character-level language-modelling datasets: ``tiny_shakespeare`` (TFDS catalog, needs
the network once) and ``pydocs`` (gradlab's offline builder ``gradlab_pydocs``).

Both go through one path: `read_text_splits` prepares the TFDS builder (array_record,
no TensorFlow) and reads each split's ``text`` records into one string; a `CharVocab`
maps characters to token ids; `lm_windows` cuts the token stream into next-token
examples of length T = ``data.seq_len``: x = tokens[t : t + T], y = tokens[t + 1 : t + T
+ 1], at t = 0, T, 2T, ... (non-overlapping inputs). x and y are int32 (N, T); minibatches
are sampled from these windows on device. Chance is the entropy of the train split's
character frequencies (the best constant, i.e. unigram, predictor), the loss's own
default.

Vocabularies (`gradlab.data.vocab`): ``pydocs`` has the fixed 96 characters
``PYDOCS_CHARS`` (newline and printable ASCII); ``tiny_shakespeare`` the sorted
characters of all its splits (65).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gradlab.data.loader import (
  DATASETS,
  DataDir,
  Dataset,
  DatasetUnavailableError,
  Task,
  iter_records,
  make_dataset,
  read_splits,
)
from gradlab.data.vocab import PYDOCS_CHARS, CharVocab


def lm_windows(tokens: np.ndarray, seq_len: int) -> tuple[np.ndarray, np.ndarray]:
  """Next-token examples: x[i] = tokens[iT : iT + T], y[i] = tokens[iT + 1 : iT + T + 1]
  for every i with iT + T + 1 <= len(tokens); int32 (N, T) each."""
  tokens = np.asarray(tokens, np.int32)
  n = (len(tokens) - 1) // seq_len
  if n < 1:
    raise ValueError(f"a text of {len(tokens)} tokens has no window of length {seq_len} + 1")
  starts = np.arange(n) * seq_len
  idx = starts[:, None] + np.arange(seq_len)[None, :]
  return tokens[idx], tokens[idx + 1]


def read_text_splits(tfds_name: str, data_dir: DataDir = None,
                     display_name: str | None = None) -> dict[str, str]:
  """{split: its text}: every ``text`` record of the split, in stored order, joined."""
  splits, _ = read_splits(tfds_name, data_dir, display_name,
                          lambda source, info: "".join(_as_str(r["text"])
                                                       for r in iter_records(source)))
  return splits


def _as_str(text: Any) -> str:
  return text.decode("utf-8") if isinstance(text, bytes) else str(text)


def text_dataset(name: str, splits: dict[str, str], vocab: CharVocab, seq_len: int,
                 test_split: str = "test") -> Dataset:
  """A next-token Dataset from split texts (train windows, and test windows if the split
  exists)."""
  x_train, y_train = lm_windows(vocab.encode(splits["train"]), seq_len)
  x_test = y_test = None
  if test_split in splits:
    x_test, y_test = lm_windows(vocab.encode(splits[test_split]), seq_len)
  return make_dataset(name, x_train, y_train, x_test, y_test, len(vocab),
                      task=Task("cross_entropy"), standardize_x=False)


def _seq_len(data_cfg: Any) -> int:
  return int(data_cfg.seq_len) if data_cfg is not None else 20


@DATASETS.register("pydocs")
def load_pydocs(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """Stdlib docstrings (`gradlab.data.text_builder`), prepared offline on first use."""
  del seed
  from gradlab.data import text_builder  # noqa: F401  (registers gradlab_pydocs)

  splits = read_text_splits("gradlab_pydocs", data_dir, "pydocs")
  return text_dataset("pydocs", splits, CharVocab(PYDOCS_CHARS), _seq_len(data_cfg))


@DATASETS.register("tiny_shakespeare")
def load_tiny_shakespeare(data_dir: DataDir, seed: int, data_cfg: Any = None) -> Dataset:
  """TFDS ``tiny_shakespeare`` (Karpathy's char-rnn text, 1.1 MB; 90/5/5 train /
  validation / test): downloaded and prepared on first use. TFDS's builder reads the
  download with TensorFlow's gfile, so preparing needs the network AND tensorflow; where
  either is missing, prepare it once elsewhere (``tfds build tiny_shakespeare
  --file_format=array_record --data_dir=DIR``) and copy DIR over (``data.data_dir``):
  reading needs neither. Not prepared and not preparable here is a
  DatasetUnavailableError."""
  del seed
  splits = read_text_splits("tiny_shakespeare", data_dir, "tiny_shakespeare")
  if "train" not in splits:
    raise DatasetUnavailableError(f"dataset 'tiny_shakespeare' has no 'train' split; has "
                                  f"{sorted(splits)}")
  vocab = CharVocab(sorted(set("".join(splits.values()))))
  return text_dataset("tiny_shakespeare", splits, vocab, _seq_len(data_cfg))
