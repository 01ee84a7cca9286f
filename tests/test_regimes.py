"""Regime labels on hand-made trajectories, and the in-scan tracker against them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from gradlab import probes, regimes

FACTOR, STALL = 100.0, 0.05


def _label(loss, grad_norm, chance=np.inf):
  return str(regimes.classify(regimes.summarize(loss, grad_norm, FACTOR), FACTOR, STALL, chance))


@pytest.mark.parametrize("loss, grad_norm, want", [
  # loss falls by half, gradients stay tame
  ([2.3, 1.8, 1.4, 1.15], [1.0, 1.2, 0.9, 0.8], "trained"),
  # loss falls by 2%: less than the 5% stall fraction
  ([2.3, 2.29, 2.27, 2.254], [1.0, 1.0, 1.0, 1.0], "stalled"),
  # gradient norm passes 100x its initial value, loss still finite and falling
  ([2.3, 2.0, 1.5, 1.2], [1.0, 5.0, 150.0, 2.0], "exploding"),
  # final loss above the initial loss
  ([2.3, 2.5, 3.0, 4.0], [1.0, 2.0, 2.0, 3.0], "exploding"),
  # a NaN loss at step 2
  ([2.3, 2.0, np.nan, np.nan], [1.0, 1.0, np.nan, np.nan], "diverged"),
  # an infinite gradient with a finite loss
  ([2.3, 2.0, 1.8, 1.7], [1.0, np.inf, 1.0, 1.0], "diverged"),
])
def test_every_label(loss, grad_norm, want):
  assert _label(loss, grad_norm) == want


def test_chance_level_turns_shrinking_logits_into_stalled():
  # starts at 11.7 (huge initial logits), ends at chance level log(10) = 2.30
  loss, grad_norm = [11.7, 6.0, 2.6, 2.31], [1.0, 1.0, 1.0, 1.0]
  assert _label(loss, grad_norm) == "trained"
  assert _label(loss, grad_norm, chance=np.log(10)) == "stalled"
  assert _label([11.7, 5.0, 1.5, 1.2], grad_norm, chance=np.log(10)) == "trained"


def test_summary_steps():
  s = regimes.summarize([2.0, 1.9, 1.8, np.nan, 1.0], [1.0, 200.0, 300.0, 1.0, np.inf], FACTOR)
  assert s["first_nonfinite_step"] == 3
  assert s["explosion_step"] == 1
  assert s["max_grad_norm"] == 300.0


def test_chance_loss_is_label_entropy():
  assert regimes.chance_loss(np.arange(1000) % 10, 10) == pytest.approx(np.log(10))
  assert regimes.chance_loss(np.array([0, 0, 0, 1]), 2) == pytest.approx(
    -(0.75 * np.log(0.75) + 0.25 * np.log(0.25)))


def test_tracker_matches_summarize():
  rng = np.random.default_rng(0)
  loss = rng.uniform(1, 3, 50)
  grad = rng.uniform(0.5, 2, 50)
  grad[17] = 500.0
  loss[31] = np.inf
  state = probes.tracker_init()
  for t in range(50):
    state = probes.tracker_update(state, jnp.int32(t), jnp.float32(loss[t]),
                                  jnp.float32(grad[t]), FACTOR)
  s = regimes.summarize(loss, grad, FACTOR)
  assert int(state.first_nonfinite_step) == s["first_nonfinite_step"] == 31
  assert int(state.explosion_step) == s["explosion_step"] == 17
  # the tracker counts finite (loss, grad) pairs only, as summarize does
  np.testing.assert_allclose(float(state.max_grad_norm), s["max_grad_norm"], rtol=1e-6)
  np.testing.assert_allclose(float(state.initial_grad_norm), grad[0], rtol=1e-6)
  np.testing.assert_allclose(float(state.final_grad_norm), grad[-1], rtol=1e-6)
