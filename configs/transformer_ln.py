"""Pre-LN vs Post-LN Transformers: gradient norm by layer at init, and the map over lr.

    python -m experiments.sweep --config=configs/transformer_ln.py --workdir=/tmp/tf_runs/ln

A character-level transformer_lm (width 32, 4 heads, GELU MLP of ratio 4, learned
positions, untied head) on `pydocs` (docstrings of the installed Python standard library,
built offline on first use; T = 32), trained with Adam at a CONSTANT learning rate (no
warmup) for 200 steps, batch 16. Axes: 6 learning rates log-spaced in [1e-4, 0.1] (x) x
depth {2, 4, 8, 16} (y) x model.ln_position {pre, post} (panels): 48 runs, 8 compiles
(depth and position are static). Besides the regime maps, the sweep draws ln_depth.png:
each run's step-0 gradient norm of its last block against depth, per position, with the
fitted log-log slope (Xiong et al. 2020, Theorem 1: Post-LN ~ L^0, Pre-LN ~ L^-1/2;
`gradlab.diagnostics.ln_depth`, drawn by `gradlab.viz.ln_depth`). The token/position
tables start at embed_scale 0.3, so the residual stream's growth with depth, not the
embedding, sets Pre-LN's final norm.
About 6 minutes on a 2-core CPU.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "transformer_lm"
  c.model.width = 32
  c.model.heads = 4
  c.model.mlp_ratio = 4
  c.model.activation = "gelu"
  c.model.use_bias = False
  c.model.norm = "layer"
  c.model.positions = "learned"
  c.model.tied_embeddings = False
  c.model.depth = 4
  c.init.embed_scale = 0.3
  c.data.name = "pydocs"
  c.data.seq_len = 32
  c.data.batch_size = 16
  c.optimizer.name = "adam"
  c.optimizer.schedule = "constant"
  c.train.steps = 200
  c.train.log_every = 10
  c.train.eval_size = 256
  c.sweep.axes = make_axes({
    "optimizer.learning_rate": np.round(np.geomspace(1e-4, 0.1, 6), 6).tolist(),
    "model.depth": [2, 4, 8, 16],
    "model.ln_position": ["pre", "post"],
  })
  return c
