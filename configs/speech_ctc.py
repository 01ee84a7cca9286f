"""Speech recognition with CTC: where a recurrent acoustic model's training blows up.

    python -m experiments.sweep --config=configs/speech_ctc.py --workdir=runs/speech_ctc
    python -m experiments.sweep --config=configs/speech_ctc.py --config.quick=True

Offline: ``tone_transcription`` (`gradlab.data.transcription`, generated at load): 1 s
clips of 1 to 5 noisy tones, each one of 8 pitch classes, as 61 frames x 32 log-mel
bands; the target is the string of pitch classes (ids 1..8, blank 0). A 1-layer,
64-unit bidirectional LSTM or GRU emits per-frame logits (``model.readout='every'``,
9 outputs) trained with CTC (`gradlab.ctc`: loss per target token, chance = the best
constant predictor's loss, 2.66), Adam, 400 steps of 32. Every run reports
``test_cer``, the greedy decoding's symbol error rate on the 500 test clips. Axes:
6 learning rates in [1e-3, 3] x 4 recurrent spectral radii in [0.5, 4] x model.name
(lstm, gru): 48 runs, 2 compiles. Measured on the shared 2-core CPU (other jobs
running): 7.1 min (417 s sweep, 28 s of it compiling); 22 trained, 9 catapult,
1 stalled, 16 diverged; best CER 0.27% (GRU, lr 0.01, radius 1). docs/speech_ctc.md.

The quick variant (`--config.quick=True`): width 32, 150 steps, 3 learning rates x 2
radii x both cells: 12 runs, 2 compiles, 78 s.

LibriSpeech (TFDS ``librispeech``: train_clean100 / test_clean, 16 kHz; 25 ms / 10 ms
frames, 80 mel bands, 3 frames stacked per step, clips zero-padded to
``data.clip_seconds``; character targets over blank, space, apostrophe, a-z: 29
outputs; ``test_cer`` is the character error rate). Reading it needs TensorFlow
(TFDS's Audio feature imports it) and the dataset prepared once where the network is
(``tfds build librispeech --file_format=array_record --data_dir=DIR``), then:

    python -m experiments.sweep --config=configs/speech_ctc.py --workdir=runs/ls_ctc \
        --config.data.name=librispeech --config.data.data_dir=DIR \
        --config.model.width=256 --config.model.depth=3 --config.train.steps=20000 \
        --config.data.max_utterances=8000

Dry-run it here on generated records of LibriSpeech's features (no TensorFlow):

    python -m experiments.sweep --config=configs/speech_ctc.py --config.quick=True \
        --config.data.name=librispeech --config.data.mock=8 --config.data.clip_seconds=1
"""

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "gru"
  c.model.depth = 1
  c.model.width = 64
  c.model.readout = "every"
  c.model.bidirectional = True
  c.data.name = "tone_transcription"
  c.data.batch_size = 32
  c.optimizer.name = "adam"
  c.train.steps = 400
  c.train.log_every = 20
  c.train.eval_size = 512
  axes = {
    "optimizer.learning_rate": [1e-3, 1e-2, 3e-2, 0.1, 0.3, 3.0],
    "init.spectral_radius": [0.5, 1.0, 2.0, 4.0],
    "model.name": ["lstm", "gru"],
  }
  c.sweep.axes = make_axes(axes)
  c.quick_overrides = make_axes({
    "model.width": 32,
    "train.steps": 150,
    "train.log_every": 10,
    "train.eval_size": 256,
    "sweep.axes": {**axes, "optimizer.learning_rate": [3e-3, 3e-2, 3.0],
                   "init.spectral_radius": [1.0, 4.0]},
  })
  return c
