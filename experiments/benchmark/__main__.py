"""Times gradlab's sweep engine against a sequential JAX loop, PyTorch and the matmul peak.

    python -m experiments.benchmark --preset=all               # small, large, default
    python -m experiments.benchmark --preset=default --fuse_optimizers
    python -m experiments.benchmark --preset=input             # the grain input pipeline
    python -m experiments.benchmark --preset=lanes             # ResNet-50 lanes, remat
    python -m experiments.benchmark --preset=explorer --explorer_workdirs=runs/a,runs/b
    scripts/gpu_benchmark.sh                                   # on a GPU

For each preset, in ONE process and one after another on the same grid: (1) gradlab's
sweep engine with all default probes on and results written, (2) the same points one at a
time through one reused jitted run, (3) the same model in plain PyTorch when torch is
importable, (4) the float32 peak of a large jitted matmul and gradlab's fraction of it,
(5) gradlab with per-layer probes off. Prints a table and writes OUT/benchmark.json and
OUT/benchmark.md. README's Performance section says what each loop computes. Like the
sweep, it gives JAX one CPU device per core (`gradlab.host_devices`) before JAX starts.
``--preset=input`` measures the input pipeline instead (`experiments.benchmark.input_pipeline`)
and writes OUT/input.json and OUT/input.md; ``--preset=lanes`` the lanes of ResNet-50
that fit a device with and without ``train.remat`` (`experiments.benchmark.lanes`),
OUT/lanes.json and OUT/lanes.md; ``--preset=explorer`` index.html's size, write time and
load time in headless Chromium for existing sweep folders
(`experiments.benchmark.explorer`), OUT/explorer.json and OUT/explorer.md.
"""

from __future__ import annotations

import logging
import os

from absl import app, flags

from experiments import cli
from gradlab import host_devices
from gradlab.registry import ConfigError

_PRESET = flags.DEFINE_string("preset", "small", "small, large, default (the default job), "
                              "all (= small, large, default), input (the grain input pipeline "
                              "on mock ImageNet), lanes (ResNet-50 lanes per device, remat), "
                              "explorer (index.html size and load time), "
                              "or tiny (a seconds-long check that the benchmark works).")
_POINTS = flags.DEFINE_integer("points", 0, "Grid size (sigma_w x lr, as square as possible); "
                               "0 = the preset's 64.")
_OUT = flags.DEFINE_string("out", "benchmark_out", "Output folder.")
_DATA_DIR = flags.DEFINE_string("data_dir", "", "TFDS data dir ('' = TFDS's default).")
_THREADS = flags.DEFINE_integer("torch_threads", 0, "PyTorch threads (0 = the cores this "
                                "process may use).")
_BUDGET = flags.DEFINE_float("loop_budget_s", 120.0, "Seconds each one-point-at-a-time loop "
                             "may spend; past it the rest of the grid is extrapolated.")
_CHUNK = flags.DEFINE_integer("chunk_size", 0, "sweep.chunk_size for gradlab (0 = whole grid).")
_MATMUL = flags.DEFINE_list("matmul_sizes", ["1024", "2048", "4096"],
                            "Square matmul sizes for the peak.")
_FLUSH = flags.DEFINE_bool("torch_flush_denormal", True, "Flush denormals to zero in the "
                           "PyTorch loop, as XLA's CPU runtime does for gradlab.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Run each timed loop this many times and keep "
                                "the fastest (for machines shared with other work).")
_FUSE = flags.DEFINE_bool("fuse_optimizers", False, "sweep.fuse_optimizers for gradlab's "
                          "phases (one compile for groups that differ only in the optimizer).")
_INPUT_EXAMPLES = flags.DEFINE_integer("input_examples", 512, "--preset=input: images per "
                                      "segment.")
_INPUT_WORKERS = flags.DEFINE_integer("input_workers", 0, "--preset=input: grain worker "
                                     "processes (0 = one per host core).")
_INPUT_SIZE = flags.DEFINE_integer("input_image_size", 224, "--preset=input: crop size.")
_LANES_BATCH = flags.DEFINE_integer("lanes_batch", 32, "--preset=lanes: batch size per lane.")
_LANES_SIZE = flags.DEFINE_integer("lanes_image_size", 224, "--preset=lanes: image size.")
_LANES_WIDTH = flags.DEFINE_integer("lanes_width", 64, "--preset=lanes: ResNet width (64: "
                                    "ResNet-50's).")
_EXPLORER = flags.DEFINE_list("explorer_workdirs", [], "--preset=explorer: sweep folders "
                              "whose index.html to measure.")
_KEEP = flags.DEFINE_bool("keep_sweeps", False, "Keep the sweep folders under --out.")


def matmul_sizes(values: list[str]) -> list[int]:
  """--matmul_sizes as positive whole numbers, or a ConfigError naming the bad one."""
  for text in values:
    if not text.strip().isdigit() or int(text) < 1:
      raise ConfigError(f"--matmul_sizes takes positive whole numbers (square matrix sizes, "
                        f"e.g. 1024,2048), got '{text}'")
  return [int(text) for text in values]


def _write(name: str, result: dict, text: str) -> int:
  import json

  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, f"{name}.json"), "w") as f:
    json.dump(result, f, indent=2)
  with open(os.path.join(_OUT.value, f"{name}.md"), "w") as f:
    f.write(text + "\n")
  print(text)
  return 0


def _input_main() -> int:
  from experiments.benchmark.input_pipeline import input_markdown, run_input_benchmark

  if min(_INPUT_EXAMPLES.value, _INPUT_SIZE.value) < 1 or _INPUT_WORKERS.value < 0:
    raise ConfigError("--input_examples and --input_image_size must be >= 1 and "
                      "--input_workers >= 0")
  result = run_input_benchmark(_INPUT_EXAMPLES.value, _INPUT_SIZE.value, _INPUT_WORKERS.value)
  return _write("input", result, input_markdown(result))


def _lanes_main() -> int:
  from experiments.benchmark.lanes import lanes_markdown, measure_lanes

  if min(_LANES_BATCH.value, _LANES_SIZE.value, _LANES_WIDTH.value) < 1:
    raise ConfigError("--lanes_batch, --lanes_image_size and --lanes_width must be >= 1")
  result = measure_lanes(_LANES_BATCH.value, _LANES_SIZE.value, width=_LANES_WIDTH.value)
  return _write("lanes", result, lanes_markdown(result))


def _explorer_main() -> int:
  from experiments.benchmark.explorer import explorer_markdown, measure_explorer
  from gradlab import results

  if not _EXPLORER.value:
    raise ConfigError("--preset=explorer needs --explorer_workdirs=A[,B...] (sweep folders)")
  for w in _EXPLORER.value:
    if results.load(w).empty:
      raise ConfigError(f"'{w}' holds no finished runs of a sweep")
  result = measure_explorer(list(_EXPLORER.value), max(1, _REPEATS.value))
  return _write("explorer", result, explorer_markdown(result))


def _main() -> int:
  sizes = matmul_sizes(_MATMUL.value)
  if _PRESET.value == "explorer":
    return _explorer_main()
  host_devices.configure()  # as the sweep does (GRADLAB_HOST_DEVICES; before JAX starts)
  if _PRESET.value in ("input", "lanes"):
    return _input_main() if _PRESET.value == "input" else _lanes_main()
  from experiments.benchmark import presets as presets_lib
  from experiments.benchmark.report import markdown
  from experiments.benchmark.runner import run_benchmark

  names = list(presets_lib.ALL) if _PRESET.value == "all" else [_PRESET.value]
  threads = _THREADS.value or host_devices.cores()
  result = run_benchmark(
    names, out_dir=_OUT.value, points=_POINTS.value or None, data_dir=_DATA_DIR.value,
    torch_threads=threads, loop_budget_s=_BUDGET.value, chunk_size=_CHUNK.value,
    matmul_sizes=sizes, keep_sweeps=_KEEP.value,
    torch_flush_denormal=_FLUSH.value, repeats=_REPEATS.value, fuse=_FUSE.value)
  print()
  print(markdown(result))
  print(f"wrote {os.path.join(_OUT.value, 'benchmark.json')} and "
        f"{os.path.join(_OUT.value, 'benchmark.md')}")
  return 0


main = cli.make_main(_main, log_level=logging.WARNING,
                     interrupted="no benchmark result is kept; rerun the command")


if __name__ == "__main__":
  app.run(main)
