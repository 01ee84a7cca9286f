"""LR sensitivity of a small Transformer with and without qk-layernorm and z-loss.

    python -m experiments.sweep --config=configs/transformer_lr_sensitivity.py \
      --workdir=/tmp/tf_runs/lr_sensitivity

Wortsman et al. 2023 ("Small-scale proxies for large-scale Transformer training
instabilities", Sec. 3): without qk-layernorm the attention logits grow at high learning
rate until attention collapses to one key (entropy collapse) and the loss stops falling
or diverges; qk-layernorm (Dehghani et al. 2023) bounds them and lowers the LR
sensitivity. A character-level transformer_lm (2 blocks, width 64, 2 heads of 32,
Pre-LN, GELU, learned positions, untied head) on `pydocs` (T = 64, built offline),
AdamW (weight decay 1e-4) with a linear warmup of 20 steps then cosine decay over 300
steps, batch 16. Axes: 7 learning rates log-spaced in [1e-3, 1] (x) x model.qk_norm
{False, True} (y) x train.z_loss {0, 1e-4} (panels; z-loss is PaLM's, Chowdhery et al.
2022): 28 runs, 4 compiles. report.md gives the LR sensitivity per (qk_norm, z_loss)
pair and the median max attention logit (attn_logit_max_max) per learning rate.
About 7 minutes on a 2-core CPU.
"""

import numpy as np

from gradlab.config import make_axes
from gradlab.defaults import base_config


def get_config():
  c = base_config()
  c.model.name = "transformer_lm"
  c.model.depth = 2
  c.model.width = 64
  c.model.heads = 2
  c.model.mlp_ratio = 4
  c.model.activation = "gelu"
  c.model.use_bias = False
  c.model.norm = "layer"
  c.model.ln_position = "pre"
  c.model.positions = "learned"
  c.model.tied_embeddings = False
  c.data.name = "pydocs"
  c.data.seq_len = 64
  c.data.batch_size = 16
  c.optimizer.name = "adamw"
  c.optimizer.weight_decay = 1e-4
  c.optimizer.schedule = "warmup_cosine"
  c.optimizer.warmup_steps = 20
  c.train.steps = 300
  c.train.log_every = 10
  c.train.eval_size = 256
  c.sweep.axes = make_axes({
    "optimizer.learning_rate": np.round(np.geomspace(1e-3, 1.0, 7), 6).tolist(),
    "model.qk_norm": [False, True],
    "train.z_loss": [0.0, 1e-4],
  })
  return c
