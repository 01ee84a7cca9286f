"""Parameterizations (`gradlab.models.parameterization`): each one's per-layer init,
multiplier and learning-rate factors against its table, the standard one unchanged,
every one equal to the standard one at the base width, and a first update whose
per-layer size scales with width as the table says."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from conftest import tiny_config

from gradlab import results
from gradlab.data import CLASSIFICATION
from gradlab.step import make_static
from gradlab.sweep import run_sweep
from gradlab.train import init_variables

BASE = 8
# Expected factors at width 4 x base (m = 4), written out from Everett et al. 2024,
# Table 1 (m^-(b - b_standard), m^-a, m^-c), per kind: input, hidden, output, vector.
EXPECTED = {
  "ntk": dict(init=(1, 2, 2, 1), mult=(1, .5, .5, 1), sgd=(1, 1, 1, 1), adam=(1, .5, .5, 1)),
  "mup": dict(init=(1, 1, 1, 1), mult=(1, 1, .5, 1), sgd=(4, 1, 1, 4), adam=(1, .25, .5, 1)),
  "mean_field": dict(init=(1, 2, 2, 1), mult=(1, .5, .25, 1), sgd=(4, 4, 4, 4),
                     adam=(1, .5, 1, 1)),
}
# MLP parameter -> kind index in the tuples above (None: width-independent, factor 1)
LEAVES = {("dense_0", "kernel"): 0, ("dense_1", "kernel"): 1, ("readout", "kernel"): 2,
          ("dense_0", "bias"): 3, ("dense_1", "bias"): 3, ("readout", "bias"): None}


def _cfg(parameterization: str, width: int, optimizer: str = "adam", lr: float = 0.01):
  return tiny_config(model=dict(width=width, base_width=BASE, depth=2,
                                parameterization=parameterization),
                     optimizer=dict(name=optimizer, learning_rate=lr))


def _init(cfg, key=0, features=40):
  static = make_static(cfg, 10, None, CLASSIFICATION)
  hp = {"sigma_w": jnp.float32(1.0), "sigma_b": jnp.float32(0.5)}
  params, _ = init_variables(static.spec, jax.random.PRNGKey(key), jnp.zeros((4, features)),
                             hp)
  return static, params


def _first_update(static, params, grads, lr):
  hp = {"learning_rate": jnp.float32(lr), "b1": jnp.float32(0.9), "b2": jnp.float32(0.999),
        "eps": jnp.float32(1e-8), "momentum": jnp.float32(0.9)}
  tx = static.make_tx(hp)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_parameterizations_init_multiplier_and_rates_follow_its_table(name):
  width = 4 * BASE
  std_static, std = _init(_cfg("standard", width))
  static, params = _init(_cfg(name, width))
  expected = EXPECTED[name]
  for (layer, leaf), kind in LEAVES.items():
    factor = 1.0 if kind is None else expected["init"][kind]
    np.testing.assert_allclose(params[layer][leaf], factor * std[layer][leaf], rtol=1e-6,
                               err_msg=f"{name} init {layer}/{leaf}")
  mult = static.spec.module.multipliers
  assert mult == pytest.approx(tuple(expected["mult"][k] for k in (0, 1, 2)))
  grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, 0.3), std)
  for opt in ("sgd", "adam"):
    ref = _first_update(_init(_cfg("standard", width, opt))[0], std, grads, 0.01)
    got = _first_update(_init(_cfg(name, width, opt))[0], std, grads, 0.01)
    for (layer, leaf), kind in LEAVES.items():
      factor = 1.0 if kind is None else expected[opt][kind]
      np.testing.assert_allclose(got[layer][leaf], factor * ref[layer][leaf], rtol=1e-6,
                                 err_msg=f"{name} {opt} rate {layer}/{leaf}")


def test_standard_is_todays_model_and_every_parameterization_is_standard_at_base_width(
    tmp_path):
  """Rows bit for bit: the standard parameterization at any base width, and mup, ntk,
  mean_field at width = base width, against the standard one (SGD and Adam)."""
  got = {}
  for name, base in (("standard", BASE), ("standard", 3), ("mup", BASE), ("ntk", BASE),
                     ("mean_field", BASE)):
    cfg = tiny_config(axes={"optimizer.name": ["sgd", "adam"],
                            "optimizer.learning_rate": [0.05, 0.5]},
                      model=dict(width=BASE, base_width=base, parameterization=name))
    run_sweep(cfg, str(tmp_path / f"{name}{base}"), progress=False)
    got[(name, base)] = results.load(str(tmp_path / f"{name}{base}")).sort_values("run_id")
  ref = got[("standard", BASE)]
  for key, df in got.items():
    for col in ("final_loss", "max_grad_norm", "test_accuracy", "regime"):
      assert list(df[col]) == list(ref[col]), (key, col)


def _effective_update_rms(name: str, width: int, optimizer: str) -> dict[str, float]:
  """RMS of the first update of each kernel times its forward multiplier, on a real
  minibatch gradient of the 'teacher' task (mean over 4 seeds)."""
  from gradlab.data import load_dataset

  ds = load_dataset("teacher")
  x, y = jnp.asarray(ds.x_train[:64]), jnp.asarray(ds.y_train[:64])
  out = {"dense_1": [], "readout": []}
  for seed in range(4):
    static, params = _init(_cfg(name, width, optimizer), seed, x.shape[-1])

    def loss(p, static=static):
      return static.objective(static.spec.module.apply({"params": p}, x), y)

    grads = jax.grad(loss)(params)
    updates = _first_update(static, params, grads, 0.01)
    mult = dict(zip(("dense_1", "readout"), static.spec.module.multipliers[1:], strict=True))
    for layer in out:
      out[layer].append(float(jnp.sqrt(jnp.mean((mult[layer] * updates[layer]["kernel"])
                                                 ** 2))))
  return {k: float(np.mean(v)) for k, v in out.items()}


def test_a_first_updates_per_layer_size_scales_with_width_as_the_table_says():
  """muP with Adam: the effective update of the hidden and output kernels shrinks as
  1/width (m^-(a+c) = m^-1); Adam's first step is lr * sign(g), so exactly. muP with SGD:
  the hidden kernel's update shrinks about as 1/width too (its gradient delta h^T has
  delta ~ 1/width), while standard SGD's shrinks only as 1/sqrt(width)."""
  small, large = BASE * 4, BASE * 16  # 4x apart
  adam = [_effective_update_rms("mup", w, "adam") for w in (small, large)]
  for layer in ("dense_1", "readout"):
    assert adam[1][layer] / adam[0][layer] == pytest.approx(0.25, rel=0.01), layer
  mup = [_effective_update_rms("mup", w, "sgd") for w in (small, large)]
  std = [_effective_update_rms("standard", w, "sgd") for w in (small, large)]
  mup_ratio = mup[1]["dense_1"] / mup[0]["dense_1"]
  std_ratio = std[1]["dense_1"] / std[0]["dense_1"]
  assert 0.15 < mup_ratio < 0.4, mup_ratio   # ~ 1/4
  assert 0.35 < std_ratio < 0.7, std_ratio   # ~ 1/2


def test_unknown_parameterization_or_optimizer_without_a_rule_is_a_config_error():
  from gradlab.registry import ConfigError
  from gradlab.sweep.grid import make_plan

  with pytest.raises(ConfigError, match="did you mean 'mup'"):
    make_plan(_cfg("mupp", 16))
  with pytest.raises(ConfigError, match="no[ne]* .*lamb|'lamb', and it has none"):
    make_plan(_cfg("mup", 16, optimizer="lamb"))
  with pytest.raises(ConfigError, match="tied_embeddings"):
    cfg = tiny_config(model=dict(name="transformer_lm", width=16, base_width=8, depth=1,
                                 heads=2, parameterization="mup"),
                      data=dict(name="token_copy"))
    make_static(cfg, 8, None, CLASSIFICATION)


def test_adam_atan2_is_scale_invariant_where_adams_epsilon_swamps_small_gradients():
  """Everett et al. 2024, Sec. 6: a * atan2(m_hat, b sqrt(v_hat)) with a = 1.27, b = 1.
  The first step is lr * 1.27 * atan2(g, |g|) = lr * 1.27 * pi/4 * sign(g) whatever the
  gradient's scale; Adam's first step lr * g / (|g| + eps) shrinks once |g| ~ eps."""
  from gradlab.optim import OPTIMIZERS

  hp = {"learning_rate": jnp.float32(0.1), "b1": jnp.float32(0.9), "b2": jnp.float32(0.999)}
  p = {"w": jnp.zeros(3)}
  for scale in (1.0, 1e-6, 1e-12):
    g = {"w": jnp.array([2.0, -1.0, 0.5]) * scale}
    tx = OPTIMIZERS.get("adam_atan2")(hp)
    u, _ = tx.update(g, tx.init(p), p)
    np.testing.assert_allclose(u["w"], -0.1 * 1.27 * np.pi / 4 * np.sign(g["w"]), rtol=1e-5)
    adam = OPTIMIZERS.get("adam")({**hp, "eps": jnp.float32(1e-8)})
    ua, _ = adam.update(g, adam.init(p), p)
    ratio = float(jnp.abs(ua["w"][0]) / 0.1)
    assert (ratio > 0.99) if scale == 1.0 else (ratio < 0.01 if scale == 1e-12 else True)


def _transfer_frame() -> pd.DataFrame:
  rows = []
  # 'a' has its optimum at lr 2^-4 at every width; 'b' moves down one step per doubling.
  for name, shift in (("a", 0), ("b", 1)):
    for i, width in enumerate((32, 64, 128)):
      best = -4 - shift * i
      for k in range(-8, 0):
        loss = 1.0 + 0.1 * (k - best) ** 2
        if k == -1:
          loss = float("nan")  # diverged
        rows.append({"parameterization": name, "model.width": width,
                     "optimizer.learning_rate": 2.0 ** k, "final_loss": loss})
  return pd.DataFrame(rows)


def test_the_transfer_table_finds_each_widths_best_lr_and_its_drift():
  from gradlab.report import lr_transfer

  axes = ["model.width", "optimizer.learning_rate", "model.parameterization"]
  df = _transfer_frame()
  best = lr_transfer.best_lr(lr_transfer.loss_curves(df, axes), axes)
  got = {(r.parameterization, r._2): np.log2(r.best_lr) for r in best.itertuples()}
  assert got == {("a", 32): -4, ("a", 64): -4, ("a", 128): -4,
                 ("b", 32): -4, ("b", 64): -5, ("b", 128): -6}
  summary = lr_transfer.transfer_summary(best, axes, lr_transfer.grid_step_log2(
    df["optimizer.learning_rate"])).set_index("parameterization")
  assert summary.loc["a", "drift_log2"] == 0 and summary.loc["a", "within_one_step"]
  assert summary.loc["b", "drift_log2"] == -2 and summary.loc["b", "spread_log2"] == 2
  assert not summary.loc["b", "within_one_step"]
  text = lr_transfer.transfer_section(df, axes)
  assert "b: the best learning rate moves by more than one grid step" in text
  assert "nan" not in text.lower() and "None" not in text


def test_readout_zero_init_starts_the_logits_at_zero_and_changes_nothing_else():
  std_static, std = _init(_cfg("mup", 4 * BASE))
  cfg = _cfg("mup", 4 * BASE)
  cfg.model.readout_zero_init = True
  _, zero = _init(cfg)
  assert not np.any(np.asarray(zero["readout"]["kernel"]))
  assert np.any(np.asarray(std["readout"]["kernel"]))
  for layer in ("dense_0", "dense_1"):
    np.testing.assert_array_equal(zero[layer]["kernel"], std[layer]["kernel"])
