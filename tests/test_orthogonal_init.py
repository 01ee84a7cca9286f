"""Orthogonal inits without batched LAPACK QR (issue 15, the CPU hang): the same bits as
jax's initializer, Haar-distributed, no hang when vmapped, and no batched QR in the
vmapped init of gradlab's LSTM."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections as mlc
import numpy as np
import pytest

from gradlab.models import build_model
from gradlab.models.init import INIT_FAMILIES, delta_orthogonal
from gradlab.models.orthogonal import Orthogonal, qr, random_orthogonal
from gradlab.models.rnn import RECURRENT_INITS

REPO = Path(__file__).resolve().parents[1]
QR_PRIMITIVES = ("qr", "householder_product", "geqrf", "geqp3", "orgqr")
SHAPES = {"square": (16, 16), "wide": (8, 24), "tall": (24, 8), "conv": (3, 3, 4, 8),
          "conv_tall": (3, 3, 8, 4)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_equals_jax_initializer_bit_for_bit(name):
  shape = SHAPES[name]
  key = jax.random.key(7)
  ref = jax.nn.initializers.orthogonal(1.0)(key, shape, jnp.float32)
  np.testing.assert_array_equal(Orthogonal(1.0)(key, shape, jnp.float32), ref)
  np.testing.assert_array_equal(jax.jit(lambda k: Orthogonal(1.0)(k, shape))(key), ref)
  scaled = jax.nn.initializers.orthogonal(2.5, column_axis=0)(key, shape, jnp.float32)
  np.testing.assert_array_equal(Orthogonal(2.5, column_axis=0)(key, shape, jnp.float32),
                                scaled)


@pytest.mark.parametrize("name", ["square", "wide", "conv"])
def test_vmapped_lanes_equal_unbatched_calls(name):
  shape = SHAPES[name]
  keys = jax.random.split(jax.random.key(3), 5)
  lanes = jax.jit(jax.vmap(lambda k: Orthogonal(1.0)(k, shape)))(keys)
  for i in range(len(keys)):
    np.testing.assert_array_equal(lanes[i], jax.nn.initializers.orthogonal(1.0)(keys[i], shape))


def test_registered_inits_are_the_safe_ones():
  """The init families and the recurrent blocks draw the same bits as jax's initializer."""
  key = jax.random.key(1)
  ref = jax.nn.initializers.orthogonal(1.0)
  assert isinstance(INIT_FAMILIES.get("orthogonal"), Orthogonal)
  np.testing.assert_array_equal(delta_orthogonal(key, (3, 3, 4, 8))[1, 1], ref(key, (4, 8)))
  blocks = RECURRENT_INITS.get("orthogonal")(key, 8, 3)
  expected = [ref(k, (8, 8), jnp.float32) for k in jax.random.split(key, 3)]
  np.testing.assert_array_equal(blocks, np.concatenate(expected, axis=1))


def test_qr_of_a_stack_equals_jnp_qr():
  a = jax.random.normal(jax.random.key(0), (2, 3, 6, 4))
  q, r = qr(a)
  q_ref, r_ref = jnp.linalg.qr(a)
  assert q.shape == (2, 3, 6, 4) and r.shape == (2, 3, 4, 4)
  np.testing.assert_allclose(q, q_ref, atol=1e-6)
  np.testing.assert_allclose(r, r_ref, atol=1e-5)


@pytest.mark.parametrize("n, m", [(12, 12), (12, 5), (5, 12)])
def test_orthonormal_rows_or_columns(n, m):
  x = np.asarray(jax.vmap(lambda k: random_orthogonal(k, n, m))(
    jax.random.split(jax.random.key(2), 4)), np.float64)
  gram = x.transpose(0, 2, 1) @ x if n >= m else x @ x.transpose(0, 2, 1)
  np.testing.assert_allclose(gram, np.broadcast_to(np.eye(min(n, m)), gram.shape), atol=2e-6)


def test_haar_moments():
  """Haar measure on O(n): E[Q_00] = 0, E[Q_00^2] = 1/n, and (Diaconis & Shahshahani 1994)
  the trace's first moments are a standard normal's, E[tr Q] = 0, E[(tr Q)^2] = 1. Over D
  draws each mean is within 5 standard errors: Var(Q_00^2) = 3/(n(n+2)) - 1/n^2,
  Var((tr Q)^2) = 2. Dropping the sign(diag R) step fails the first: LAPACK's R has a
  negative diagonal, so Q_00 = -|z_00| / ||z_0||, mean -sqrt(2 / (pi n))."""
  n, draws = 6, 4000
  q = np.asarray(jax.jit(jax.vmap(lambda k: random_orthogonal(k, n)))(
    jax.random.split(jax.random.key(11), draws)), np.float64)
  q00, trace = q[:, 0, 0], np.trace(q, axis1=1, axis2=2)
  se = lambda var: 5.0 * np.sqrt(var / draws)
  assert abs(q00.mean()) < se(1.0 / n)
  assert abs((q00**2).mean() - 1.0 / n) < se(3.0 / (n * (n + 2)) - 1.0 / n**2)
  assert abs(trace.mean()) < se(1.0)
  assert abs((trace**2).mean() - 1.0) < se(2.0)


# The pattern that hung a CPU sweep (../shared/evidence/batched_qr_deadlock.py), with
# gradlab's real recurrent init: an LSTM's 4 orthogonal 128 x 128 gate blocks, vmapped
# over 30 lanes, called 40 times. With jax's initializer (batched QR) this hangs on 2 cores
# within seconds to a minute, OPENBLAS_NUM_THREADS=1 or not; OpenBLAS is held to one thread
# here only so that the QRs are fast on a loaded machine.
HANG_PATTERN = textwrap.dedent("""
  import jax
  from gradlab.models.rnn import RECURRENT_INITS
  init = jax.jit(jax.vmap(lambda k: RECURRENT_INITS.get("orthogonal")(k, 128, 4)))
  for i in range(40):
    jax.block_until_ready(init(jax.random.split(jax.random.key(i), 30)))
  print("done")
""")


def test_vmapped_orthogonal_init_never_hangs():
  env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "JAX_PLATFORMS": "cpu"}
  try:
    proc = subprocess.run([sys.executable, "-c", HANG_PATTERN], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
  except subprocess.TimeoutExpired:
    pytest.fail("a vmapped orthogonal init did not return within 60 s (batched QR hang)")
  assert proc.returncode == 0 and proc.stdout.strip() == "done", proc.stderr[-2000:]


def _qr_operands(jaxpr) -> list[tuple[int, ...]]:
  """The operand shape of every QR-like equation in `jaxpr` and in every jaxpr nested in
  its equations (scan bodies, custom_vmap calls, pjit): more than 2 dimensions = batched."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name in QR_PRIMITIVES:
      found.append(tuple(eqn.invars[0].aval.shape))
    for value in eqn.params.values():
      for sub in value if isinstance(value, (list, tuple)) else (value,):
        inner = getattr(sub, "jaxpr", sub)
        if hasattr(inner, "eqns"):
          found += _qr_operands(inner)
  return found


def test_vmapped_lstm_init_has_no_batched_qr():
  cfg = mlc.ConfigDict(dict(
    model=dict(name="lstm", depth=1, width=16, activation="tanh", readout="last",
               use_bias=True),
    init=dict(family="orthogonal", recurrent_family="orthogonal", forget_bias=0.0)))
  module = build_model(cfg, 3).module
  x = jnp.zeros((2, 5, 4))
  init = jax.vmap(lambda k: module.init(k, x)["params"])
  keys = jax.random.split(jax.random.key(0), 6)
  shapes = _qr_operands(jax.make_jaxpr(init)(keys).jaxpr)
  assert shapes and all(len(shape) == 2 for shape in shapes), shapes
  hlo = jax.jit(init).lower(keys).as_text()
  lapack_qr = [line for line in hlo.splitlines()
               if "custom_call" in line and ("geqrf" in line or "orgqr" in line)]
  assert lapack_qr and all('num_batch_dims = "0"' in line for line in lapack_qr)
  lanes = jax.jit(init)(keys)
  alone = module.init(keys[4], x)["params"]
  np.testing.assert_array_equal(lanes["recurrent_0"]["kernel"][4],
                                alone["recurrent_0"]["kernel"])
  np.testing.assert_array_equal(lanes["input_0"]["kernel"][4], alone["input_0"]["kernel"])
