"""Turns the timings of a benchmark into ratios, target checks, JSON and Markdown."""

from __future__ import annotations

import dataclasses
import os
import platform
import subprocess
import sys
from typing import Any

from experiments.benchmark.flops import MatmulPeak
from experiments.benchmark.presets import Preset
from experiments.benchmark.timing import LoopTiming
from gradlab import host_devices

SECTIONS: tuple[str, ...] = ("preset", "gradlab", "sequential_jax", "pytorch", "matmul_peak",
                             "probe_overhead", "ratios", "targets")


def _versions() -> dict[str, str | None]:
  import flax
  import jax
  import jaxlib
  import numpy
  import optax

  from experiments.benchmark.torch_loop import import_torch

  torch = import_torch()
  return {"python": platform.python_version(), "jax": jax.__version__,
          "jaxlib": jaxlib.__version__, "flax": flax.__version__, "optax": optax.__version__,
          "numpy": numpy.__version__, "torch": torch.__version__ if torch else None}


def _cpu_model() -> str:
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or "unknown"


def _git_commit() -> str:
  """HEAD of the checkout gradlab runs from, with '+dirty' for uncommitted changes."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                          capture_output=True, timeout=5, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           text=True, capture_output=True, timeout=5, check=False).stdout
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return (head or "unknown") + ("+dirty" if dirty.strip() else "")


def meta() -> dict[str, Any]:
  """Device kind, versions and machine facts, recorded once per benchmark."""
  import jax

  cores = host_devices.cores()
  return {"platform": jax.default_backend(), "device_kind": jax.devices()[0].device_kind,
          "n_devices": jax.device_count(), "cpu_model": _cpu_model(), "cpu_cores": cores,
          "versions": _versions(), "git_commit": _git_commit(),
          "command": " ".join(["python -m experiments.benchmark", *sys.argv[1:]])}


def ratios(gradlab: LoopTiming, seq: LoopTiming, torch: LoopTiming | None,
           achieved: dict[str, float], peak: MatmulPeak, probes_off: LoopTiming
           ) -> dict[str, float | None]:
  """Speedups of gradlab over each loop (throughput ratios), wall and run-only."""
  def speedup(other: LoopTiming | None, run_only: bool) -> float | None:
    if other is None:
      return None
    if run_only:
      return gradlab.run_steps_per_s / other.run_steps_per_s
    return gradlab.steps_per_s / other.steps_per_s

  return {
    "gradlab_vs_sequential": speedup(seq, False),
    "gradlab_vs_sequential_run_only": speedup(seq, True),
    "gradlab_vs_pytorch": speedup(torch, False),
    "gradlab_vs_pytorch_run_only": speedup(torch, True),
    "matmul_peak_fraction": achieved["run_gflops"] / peak.best_gflops,
    "matmul_peak_fraction_wall": achieved["wall_gflops"] / peak.best_gflops,
    "probe_overhead": gradlab.run_s / probes_off.run_s - 1.0,
    "probe_overhead_wall": gradlab.wall_s / probes_off.wall_s - 1.0,
  }


def targets(preset: str, points: int, platform_name: str, r: dict[str, float | None],
            gradlab: LoopTiming | None = None) -> list[dict[str, Any]]:
  """The issue's targets that apply to this preset and device, each met or missed.

  `tiny` only checks that the benchmark works: no target applies to it.
  """
  rows: list[dict[str, Any]] = []
  if preset == "tiny":
    return rows

  def check(name: str, figure: float | None, threshold: float, at_most: bool = False,
            run_only: float | None = None, run_threshold: float | None = None) -> None:
    def ok(x: float | None, line: float) -> bool | None:
      return None if x is None else (x <= line if at_most else x >= line)

    row = {"target": name, "figure": figure, "threshold": threshold,
           "met": ok(figure, threshold)}
    if run_only is not None:
      line = threshold if run_threshold is None else run_threshold
      row.update(figure_run_only=run_only, threshold_run_only=line,
                 met_run_only=ok(run_only, line))
    rows.append(row)

  if platform_name == "cpu" and preset == "small":
    check("small: gradlab >= 2x sequential JAX loop (steps/s, wall; 3x run only)",
          r["gradlab_vs_sequential"], 2.0, run_only=r["gradlab_vs_sequential_run_only"],
          run_threshold=3.0)
    check("small: gradlab >= 40x PyTorch loop (steps/s, wall)", r["gradlab_vs_pytorch"], 40.0,
          run_only=r["gradlab_vs_pytorch_run_only"])
  if platform_name == "cpu" and preset == "large":
    check("large: gradlab >= 45% of matmul peak (GFLOP/s while running)",
          r["matmul_peak_fraction"], 0.45)
  if platform_name == "cpu" and preset == "default":
    check("default: gradlab >= 2x sequential JAX loop (steps/s, wall)",
          r["gradlab_vs_sequential"], 2.0)
    if gradlab is not None:
      check("default: compile <= 1/4 of gradlab's wall time", gradlab.compile_s / gradlab.wall_s,
            0.25, at_most=True)
  if platform_name == "gpu" and preset == "small" and points >= 1024:
    check(f"GPU small, {points} points: gradlab >= 50x sequential JAX loop (steps/s, wall)",
          r["gradlab_vs_sequential"], 50.0, run_only=r["gradlab_vs_sequential_run_only"])
  check("layer probes on cost <= 15% over off (run seconds)", r["probe_overhead"], 0.15,
        at_most=True)
  return rows


def preset_section(preset: Preset, n_points: int, grid: str, platform_name: str,
                   gradlab: LoopTiming, written: dict[str, Any], seq: LoopTiming,
                   torch: LoopTiming | None, torch_note: str, peak: MatmulPeak,
                   flops: int, probes_off: LoopTiming, load: dict[str, list[float]]
                   ) -> dict[str, Any]:
  """Everything measured for one preset, JSON-ready, with the SECTIONS keys."""
  achieved = {"grid_matmul_flops": flops, "run_gflops": flops / gradlab.run_s / 1e9,
              "wall_gflops": flops / gradlab.wall_s / 1e9}
  r = ratios(gradlab, seq, torch, achieved, peak, probes_off)
  return {
    "preset": {**dataclasses.asdict(preset), "points": n_points, "grid": grid},
    "gradlab": {**gradlab.to_dict(), **written},
    "sequential_jax": seq.to_dict(),
    "pytorch": ({**torch.to_dict(), "skipped": False} if torch is not None
                else {"skipped": True, "note": torch_note}),
    "matmul_peak": {**dataclasses.asdict(peak), **achieved},
    "probe_overhead": {"probes_on": gradlab.to_dict(), "probes_off": probes_off.to_dict(),
                       "overhead_run": r["probe_overhead"],
                       "overhead_wall": r["probe_overhead_wall"]},
    "ratios": r,
    "targets": targets(preset.name, n_points, platform_name, r, gradlab),
    "load_average": load,
  }


def _f(value: float | None, fmt: str) -> str:
  return "n/a" if value is None else format(value, fmt)


def preset_markdown(section: dict[str, Any]) -> str:
  """The Markdown table and notes of one preset."""
  p = section["preset"]
  g = section["gradlab"]
  lines = [
    f"### `{p['name']}`: depth {p['depth']}, width {p['width']}, batch {p['batch_size']}, "
    f"{p['steps']} steps, {p['points']} points ({p['grid']})",
    "",
    "| loop | points timed | compile s | run s | wall s | run-steps/s | run-steps/s "
    "excl. compile | gradlab speedup (excl. compile) | peak RSS MiB | load |",
    "|---|---|---|---|---|---|---|---|---|---|",
  ]
  loops = [section["gradlab"], section["sequential_jax"], section["pytorch"],
           section["probe_overhead"]["probes_off"]]
  for loop in loops:
    if loop.get("skipped"):
      lines.append(f"| PyTorch loop | skipped: {loop['note']} | | | | | | | | |")
      continue
    fast = g["steps_per_s"] / loop["steps_per_s"]
    fast_run = g["run_steps_per_s"] / loop["run_steps_per_s"]
    lines.append(
      f"| {loop['name']} | {loop['points_timed']} of {loop['points']} | "
      f"{loop['compile_s']:.1f} | {loop['run_s']:.1f} | {loop['wall_s']:.1f} | "
      f"{loop['steps_per_s']:,.0f} | {loop['run_steps_per_s']:,.0f} | "
      f"{fast:.2f}x ({fast_run:.2f}x) | {loop['peak_rss_mb']:,.0f} | "
      f"{loop['load_avg_1min']:.1f} |")
  m = section["matmul_peak"]
  r = section["ratios"]
  sizes = ", ".join(f"{n}: {v:.0f}" for n, v in m["gflops_by_size"].items())
  lines += [
    "",
    f"- matmul peak: {m['best_gflops']:.1f} GFLOP/s float32 (n = {m['best_size']}; "
    f"by size {sizes}). gradlab: {m['grid_matmul_flops'] / 1e12:.3f} TFLOP of grid matmuls "
    f"at {m['run_gflops']:.1f} GFLOP/s while running = **{r['matmul_peak_fraction']:.0%} "
    f"of peak** ({m['wall_gflops']:.1f} GFLOP/s = {r['matmul_peak_fraction_wall']:.0%} "
    "over the wall time).",
    f"- layer probes: on {g['run_s']:.2f} s vs off "
    f"{section['probe_overhead']['probes_off']['run_s']:.2f} s running = "
    f"**{r['probe_overhead']:+.1%}** ({r['probe_overhead_wall']:+.1%} wall).",
    f"- gradlab wrote {g['rows_written']} result rows ({g['n_compiles']} compile(s) on "
    f"{g.get('n_devices', 1)} device(s), loaded on {g.get('n_relocations', 0)} more in "
    f"{g.get('relocate_s', 0.0):.1f} s); "
    f"regimes: {', '.join(f'{k} {v}' for k, v in g['regimes'].items())}.",
  ]
  for loop in loops:
    if not loop.get("skipped") and loop["points_timed"] != loop["points"]:
      lines.append(f"- {loop['name']}: {loop['note']}.")
  lines.append("")
  verdicts = {True: "met", False: "MISSED", None: "not measured"}
  for t in section["targets"]:
    line = (f"- target {t['target']}: {_f(t['figure'], '.3g')} "
            f"(threshold {t['threshold']:g}): **{verdicts[t['met']]}**")
    if "figure_run_only" in t:
      line += (f"; excl. compile {_f(t['figure_run_only'], '.3g')} (threshold "
               f"{t.get('threshold_run_only', t['threshold']):g}): "
               f"**{verdicts[t['met_run_only']]}**")
    lines.append(line)
  return "\n".join(lines) + "\n"


def markdown(result: dict[str, Any]) -> str:
  """The whole benchmark.md: machine line, then one table per preset."""
  m = result["meta"]
  v = m["versions"]
  head = [
    "## Benchmark",
    "",
    f"`{m['command']}` at commit {m.get('git_commit', 'unknown')} on {m['platform']} "
    f"({m['device_kind']}, {m['n_devices']} device(s); "
    f"CPU {m['cpu_model']}, {m['cpu_cores']} cores). jax {v['jax']}, flax {v['flax']}, "
    f"optax {v['optax']}, torch {v['torch'] or 'not installed'}.",
    "",
    "run-steps/s = points x steps / wall seconds (compile, data and result writing "
    "included); 'excl. compile' divides by the run seconds alone. Speedup = gradlab's "
    "run-steps/s over the loop's. load = 1-minute load average when the loop ended (about "
    "the thread count when nothing else shares the cores).",
    "",
    "",
  ]
  return "\n".join(head) + "\n".join(preset_markdown(s) for s in result["presets"].values())
