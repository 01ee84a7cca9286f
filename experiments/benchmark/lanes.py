"""`--preset=lanes`: how many lanes of ResNet-50 at 224 fit one device, with and without
``train.remat``, from the compiled program's memory analysis.

    python -m experiments.benchmark --preset=lanes [--lanes_batch=32] [--lanes_image_size=224]

The program is the sweep's own (`gradlab.train.build_run` of configs/imagenet_resnet50.py,
one BatchNorm momentum run per lane, vmapped), lowered at 1 and at 2 lanes on abstract
data (`jax.ShapeDtypeStruct`: nothing is loaded or run) and compiled for the default
device. Its bytes per device (`gradlab.sweep.memory.compiled_bytes`: arguments,
temporaries and two sets of outputs) at 1 and 2 lanes give the bytes per lane and the
fixed part, so the lanes that fit the device's memory are
floor((memory - fixed) / per lane), the rule by which a sweep sizes its chunks
(`gradlab.sweep.memory.choose_chunk_size`, whose budget is half the device by default).
The data arrays are those of a ``--lanes_examples`` example split (they are the fixed
part's bulk, not the lanes').
"""

from __future__ import annotations

import importlib
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradlab.compile_options import compile_lowered
from gradlab.config import make_axes
from gradlab.data.loader import Dataset
from gradlab.sweep import grid, memory
from gradlab.train import build_run, make_data_arrays


def lanes_config(batch: int, image_size: int, remat: bool, width: int = 64,
                 depth: int = 50) -> Any:
  """configs/imagenet_resnet50.py cut to one BatchNorm momentum run."""
  cfg = importlib.import_module("configs.imagenet_resnet50").get_config()
  cfg.data.batch_size, cfg.data.image_size = batch, image_size
  cfg.model.width, cfg.model.depth = width, depth
  cfg.train.remat = remat
  cfg.sweep.axes = make_axes({"optimizer.name": ["momentum"]})
  return cfg


def program_bytes(cfg: Any, lanes: int, examples: int) -> int | None:
  """Bytes per device of the vmapped run at `lanes` lanes (None: no memory analysis)."""
  plan = grid.make_plan(cfg)
  group = plan.groups[0]
  size = int(cfg.data.image_size)
  x = np.zeros((examples, size, size, 3), np.float32)
  y = np.zeros((examples,), np.int32)
  dataset = Dataset("imagenet2012", x, y, x, y, 1000)
  run = build_run(group.cfg, 1000)
  data = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                make_data_arrays(dataset, int(cfg.train.eval_size)))
  hp = {k: jax.ShapeDtypeStruct((lanes,), jnp.float32) for k in group.hparams}
  keys = jax.ShapeDtypeStruct((lanes, 2), jnp.uint32)
  lowered = jax.jit(jax.vmap(run.run, in_axes=(0, 0, None))).lower(hp, keys, data)
  compiled = compile_lowered(lowered, int(cfg.sweep.cpu_opt_level),
                             jax.devices()[0].platform)
  return memory.compiled_bytes(compiled)


def measure_lanes(batch: int = 32, image_size: int = 224, examples: int = 256,
                  width: int = 64, depth: int = 50) -> dict[str, Any]:
  """Per-lane and fixed bytes and lanes per device, without and with remat."""
  device_bytes = memory.device_memory_bytes()
  out: dict[str, Any] = {"batch_size": batch, "image_size": image_size, "width": width,
                         "depth": depth, "examples": examples,
                         "device": str(jax.devices()[0].device_kind),
                         "device_bytes": device_bytes}
  for remat in (False, True):
    cfg = lanes_config(batch, image_size, remat, width, depth)
    one, two = (program_bytes(cfg, n, examples) for n in (1, 2))
    if one is None or two is None:
      out["remat" if remat else "plain"] = None
      continue
    per_lane = max(two - one, 1)
    fixed = one - per_lane
    out["remat" if remat else "plain"] = {
      "bytes_1_lane": one, "bytes_2_lanes": two, "per_lane_bytes": per_lane,
      "fixed_bytes": fixed, "lanes_per_device": max(0, math.floor((device_bytes - fixed)
                                                                  / per_lane)),
      "lanes_in_default_budget": max(0, math.floor(
        (memory.budget_bytes(0.0) - fixed) / per_lane))}
  return out


def lanes_markdown(r: dict[str, Any]) -> str:
  """The lanes preset's table."""
  rows = [f"## Lanes per device: ResNet-{r['depth']} (width {r['width']}) at "
          f"{r['image_size']}, batch {r['batch_size']}, on {r['device']} "
          f"({memory.describe_bytes(r['device_bytes'])})", "",
          "| train.remat | per lane | fixed | lanes per device | in the default budget |",
          "|---|---:|---:|---:|---:|"]
  for name in ("plain", "remat"):
    m = r[name]
    if m is None:
      rows.append(f"| {name == 'remat'} | no memory analysis on this backend | | | |")
      continue
    rows.append(f"| {name == 'remat'} | {memory.describe_bytes(m['per_lane_bytes'])} | "
                f"{memory.describe_bytes(m['fixed_bytes'])} | {m['lanes_per_device']} | "
                f"{m['lanes_in_default_budget']} |")
  return "\n".join(rows)
