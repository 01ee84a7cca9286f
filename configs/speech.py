"""A speech-like task: log-mel sequences classified by recurrent networks.

    python -m experiments.sweep --config=configs/speech.py --workdir=runs/speech

Offline by default: ``tones`` (gradlab's TFDS builder ``gradlab_tones``, generated here
on first use: 8 kHz, 0.5 s clips of three noisy tones; the class is the low/high contour
of the three, relative to a base pitch drawn per clip, 8 classes, chance log 8), as
30 frames x 32 log-mel bands computed in JAX at load (`gradlab.data.audio`). A 1-layer,
64-unit tanh Elman RNN and a GRU read the frames and classify from the last step, Adam,
400 steps of 32. Axes: 5 spectral radii log-spaced in [0.5, 2] (x) x 4 learning rates
in [1e-3, 1e-1] (y) x model.name (panels): 40 runs, 2 compiles.
Measured wall time on a shared 2-core CPU: 30 s (plus ~6 s to generate gradlab_tones
once); results in docs/rnn.md.

The real speech path is TFDS ``spoken_digit`` (Free Spoken Digit Dataset, 8 kHz, 10
classes; 61 frames x 32 bands, 2000 train / 500 test by a fixed permutation); preparing
it needs the network and TensorFlow once (``tfds build spoken_digit
--file_format=array_record --data_dir=DIR``), then:

    python -m experiments.sweep --config=configs/speech.py --workdir=runs/speech_digits \
        --config.data.name=spoken_digit --config.data.data_dir=DIR
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "elman"
  c.model.activation = "tanh"
  c.model.depth = 1
  c.model.width = 64
  c.model.readout = "last"
  c.data.name = "tones"
  c.data.batch_size = 32
  c.optimizer.name = "adam"
  c.train.steps = 400
  c.train.log_every = 20
  c.train.eval_size = 1024
  c.sweep.axes = make_axes({
    "init.spectral_radius": np.round(np.geomspace(0.5, 2.0, 5), 4).tolist(),
    "optimizer.learning_rate": [1e-3, 3e-3, 1e-2, 1e-1],
    "model.name": ["elman", "gru"],
  })
  return c
