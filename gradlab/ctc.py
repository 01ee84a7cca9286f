"""Connectionist temporal classification: the ``ctc`` loss, its chance level and the
character (token) error rate of greedy decoding.

Graves, Fernandez, Gomez & Schmidhuber 2006, "Connectionist temporal classification:
labelling unsegmented sequence data with recurrent neural networks" (ICML): a network
emits, at every frame t of T, a distribution y_t over the K symbols and a BLANK. A path
pi in {blank, 1..K}^T maps to a labelling by B (Sec. 3.1: merge repeated symbols, then
drop blanks), and p(l | x) = sum_{pi in B^-1(l)} prod_t y_t(pi_t) (eq. 2-3), summed by
the forward recursion over the blank-extended label l' (Sec. 4.1, eq. 5-8). The loss of
an example is -ln p(l | x) (eq. 12-14). `optax.ctc_loss` computes it.

Conventions (what the datasets of `gradlab.data.transcription` produce):
- outputs: per-frame logits (B, T, K + 1), the BLANK at index ``BLANK = 0`` (optax's
  default ``blank_id``); symbol ids are 1..K. The recurrent models give them with
  ``model.readout = 'every'`` and ``num_classes = K + 1``.
- labels: int (B, L), right-padded with -1 (``label_paddings = labels < 0``).
- input paddings: none. Every clip of a dataset has the same T frames and the loss runs
  over all of them: the synthetic clips have a fixed length, and LibriSpeech clips are
  zero-padded (silence, which CTC labels with blanks; clips too long are dropped, not
  cropped, so a transcript always matches its audio: `gradlab.data.transcription`).

Normalisation: the loss of a batch is sum_b -ln p(l_b | x_b) / sum_b |l_b|, the negative
log-likelihood PER TARGET TOKEN (the same token weighting as the error rate below), so
its scale does not grow with the transcript length. Adding -1 padding changes nothing.

Chance (`constant_predictor_loss`): the loss of the best predictor that ignores its
input and the frame index: one distribution q over the K + 1 outputs, used at every one
of the T frames, fitted to the training labels. min_q sum_b -ln p_q(l_b) / sum_b |l_b|,
p_q(l) = sum_{pi in B^-1(l)} prod_t q(pi_t) (Graves et al.'s eq. 3 with y_t = q), found
numerically (Adam on the logits of q, from q_blank = 1 - mean|l| / T and the symbols'
unigram frequencies times mean|l| / T). It needs T, which only the dataset knows: the
datasets state it as their `Task.chance`. The loss's own ``chance(labels, K)`` (used
only when a dataset of another task is trained with ``train.loss='ctc'``) is +inf: the
run is then judged against its initial loss alone (`gradlab.regimes.classify`).

Error rate (`error_rate`, the ``cer`` metric, result column ``test_cer``): greedy
(best-path) decoding, Graves et al. Sec. 3.2 eq. 4: the argmax output at every frame,
repeats merged, blanks dropped; then the Levenshtein (1966) distance to the target
(substitutions + insertions + deletions), summed over the examples and divided by the
summed target lengths. Character error rate on LibriSpeech, symbol (token) error rate
on the tone task. Computed in JAX (jit, vmap over the batch).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gradlab.losses import LOSSES, Loss, logits_of

BLANK = 0
CHANCE_EXAMPLES = 256    # training transcripts the chance level is fitted to
CHANCE_STEPS = 100       # Adam steps on the constant predictor's logits
CHANCE_LR = 0.1


def label_lengths(labels_BxL: jax.Array) -> jax.Array:
  """Tokens per example: the entries >= 0 (labels are right-padded with -1)."""
  return jnp.sum(labels_BxL >= 0, axis=-1)


def ctc_per_example(logits_BxTxK: jax.Array, labels_BxL: jax.Array) -> jax.Array:
  """-ln p(l_b | x_b) per example (B,) by optax.ctc_loss, blank ``BLANK``, no input
  paddings, label paddings where labels < 0."""
  label_paddings = (labels_BxL < 0).astype(jnp.float32)
  logit_paddings = jnp.zeros(logits_BxTxK.shape[:2], jnp.float32)
  labels = jnp.where(labels_BxL < 0, 0, labels_BxL).astype(jnp.int32)
  return optax.ctc_loss(logits_BxTxK.astype(jnp.float32), logit_paddings, labels,
                        label_paddings, blank_id=BLANK)


def ctc_loss(outputs: Any, labels_BxL: jax.Array) -> jax.Array:
  """sum_b -ln p(l_b | x_b) / sum_b |l_b|: the CTC negative log-likelihood per target
  token (module docstring); `outputs` are logits (B, T, K + 1) or a dict with 'logits'."""
  per_B = ctc_per_example(logits_of(outputs), labels_BxL)
  tokens = jnp.maximum(jnp.sum(label_lengths(labels_BxL)), 1).astype(per_B.dtype)
  return jnp.sum(per_B) / tokens


# --- greedy decoding and the edit distance ------------------------------------------------

def _collapse(best_T: jax.Array) -> jax.Array:
  """One best path (T,) -> its labelling B(pi), left-aligned, padded with -1 (T,)."""
  steps = best_T.shape[0]
  prev = jnp.concatenate([jnp.full((1,), -1, best_T.dtype), best_T[:-1]])
  keep = (best_T != prev) & (best_T != BLANK)
  slot = jnp.where(keep, jnp.cumsum(keep) - 1, steps)   # steps: out of range, dropped
  return jnp.full((steps,), -1, jnp.int32).at[slot].set(best_T.astype(jnp.int32),
                                                       mode="drop")


def greedy_decode(logits_BxTxK: jax.Array) -> jax.Array:
  """Best-path decoding (Graves et al. 2006, Sec. 3.2, eq. 4): argmax at every frame,
  repeats merged, blanks dropped; (B, T) symbol ids, right-padded with -1."""
  return jax.vmap(_collapse)(jnp.argmax(logits_BxTxK, axis=-1))


def edit_distance(hyp_T: jax.Array, ref_L: jax.Array) -> jax.Array:
  """Levenshtein distance between two -1-padded id sequences (unit costs for a
  substitution, an insertion and a deletion). The dynamic programme d[i, j] = min(
  d[i-1, j] + 1, d[i, j-1] + 1, d[i-1, j-1] + [h_i != r_j]) (Wagner & Fischer 1974) is
  scanned over the hypothesis, one row per token; within a row the left-to-right term
  is a running minimum: d[i, j] = min_{k <= j} (e_k + j - k), e the row without it."""
  cols = jnp.arange(ref_L.shape[0] + 1)

  def row_step(row: jax.Array, h: jax.Array) -> tuple[jax.Array, None]:
    sub = row[:-1] + (ref_L != h)
    without_left = jnp.concatenate([row[:1] + 1, jnp.minimum(sub, row[1:] + 1)])
    new = jax.lax.cummin(without_left - cols, axis=0) + cols
    return jnp.where(h >= 0, new, row), None

  row, _ = jax.lax.scan(row_step, cols, hyp_T)
  return row[jnp.sum(ref_L >= 0)]


def error_rate(logits_BxTxK: jax.Array, labels_BxL: jax.Array) -> jax.Array:
  """sum_b edit_distance(greedy_decode(x_b), l_b) / sum_b |l_b| (0 / 0 is 0)."""
  hyp_BxT = greedy_decode(logits_BxTxK)
  dist_B = jax.vmap(edit_distance)(hyp_BxT, labels_BxL.astype(jnp.int32))
  tokens = jnp.maximum(jnp.sum(label_lengths(labels_BxL)), 1)
  return jnp.sum(dist_B) / tokens


def ctc_metrics(outputs: Any, labels_BxL: jax.Array) -> dict[str, jax.Array]:
  """{'cer': the greedy decoding's character (token) error rate} (column test_cer)."""
  return {"cer": error_rate(logits_of(outputs), labels_BxL)}


# --- chance: the best constant predictor -------------------------------------------------

def _initial_logits(labels: np.ndarray, num_classes: int, num_frames: int) -> np.ndarray:
  """log q0: q0_blank = 1 - mean|l| / T; symbol k: its unigram frequency x mean|l| / T."""
  tokens = labels[labels >= 0]
  share = min(max(tokens.size / max(len(labels), 1) / num_frames, 1e-3), 1 - 1e-3)
  counts = np.bincount(tokens, minlength=num_classes)[:num_classes].astype(np.float64)
  counts[BLANK] = 0.0
  q = share * (counts + 0.5) / (counts + 0.5).sum()
  q[BLANK] = 1.0 - share
  return np.log(q / q.sum()).astype(np.float32)


def _constant_loss(theta_K: jax.Array, labels_BxL: jax.Array, num_frames: int) -> jax.Array:
  logits = jnp.broadcast_to(theta_K, (labels_BxL.shape[0], num_frames, theta_K.shape[0]))
  return ctc_loss(logits, labels_BxL)


def _fit_constant(theta0_K: jax.Array, labels_BxL: jax.Array, num_frames: int,
                  steps: int) -> tuple[jax.Array, jax.Array]:
  """(loss at theta0, loss after `steps` Adam steps): the constant predictor's fit."""
  opt = optax.adam(CHANCE_LR)
  value_and_grad = jax.value_and_grad(_constant_loss)

  def step(carry: tuple[jax.Array, Any], _: None) -> tuple[tuple[jax.Array, Any], jax.Array]:
    theta, state = carry
    loss, grad = value_and_grad(theta, labels_BxL, num_frames)
    updates, state = opt.update(grad, state, theta)
    return (optax.apply_updates(theta, updates), state), loss

  (theta, _), losses = jax.lax.scan(step, (theta0_K, opt.init(theta0_K)), None, length=steps)
  return losses[0], _constant_loss(theta, labels_BxL, num_frames)


_fit_constant_jit = jax.jit(_fit_constant, static_argnums=(2, 3))


def constant_predictor_loss(labels: np.ndarray, num_classes: int, num_frames: int,
                            max_examples: int = CHANCE_EXAMPLES,
                            steps: int = CHANCE_STEPS) -> float:
  """The chance level of a CTC task (module docstring): min over one distribution q on
  the `num_classes` outputs (blank included) used at every one of `num_frames` frames,
  of the per-token CTC loss on the first `max_examples` transcripts of `labels` (int
  (N, L), -1-padded); by `steps` Adam steps from the frequency-based q0 (the smaller of
  the two losses is returned)."""
  y = np.asarray(labels)[:max_examples].astype(np.int32)
  theta0 = jnp.asarray(_initial_logits(y, num_classes, num_frames))
  start, fitted = _fit_constant_jit(theta0, jnp.asarray(y), int(num_frames), int(steps))
  return float(min(float(start), float(fitted)))


def chance_without_frames(labels: np.ndarray, num_classes: int) -> float:
  """The registered loss's fallback: without the frame count no constant predictor's
  loss can be computed, so +inf (judge against the initial loss alone). Datasets with
  a CTC task state `constant_predictor_loss` as their `Task.chance`."""
  del labels, num_classes
  return math.inf


LOSSES.register("ctc")(Loss(ctc_loss, chance_without_frames, ctc_metrics))
