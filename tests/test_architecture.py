"""The house's measured targets, read from the source with `ast` (nothing is imported).

- no import cycle in gradlab/, counting module-level AND function-local imports;
- no file in gradlab/ or experiments/ over 400 lines, no function in gradlab/ over 120;
- importing the sweep engine does not import matplotlib; ``matplotlib.use`` is called in
  one file; only gradlab/viz/ imports matplotlib or gradlab.viz, only viz/ and report/
  import gradlab.report;
- the floors: config does not import the optimizers, and the lowest floors never import
  sweep, train, viz or report.

Each failure names the file (and line, or the cycle) that breaks the target.
"""

from __future__ import annotations

import ast
import functools
import os
import subprocess
import sys
from collections.abc import Iterator

from conftest import REPO

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 120
# The floors below train: they may not import these (nor anything under them).
UPPER_FLOORS = ("gradlab.sweep", "gradlab.train", "gradlab.viz", "gradlab.report")
LOW_PACKAGES = ("models", "optim", "data", "diagnostics")
LOW_MODULES = ("results", "regimes", "theory", "losses", "probes", "config", "registry")


def _py_files(root: str) -> Iterator[str]:
  """Every .py file under REPO/root, as a path relative to REPO, in a stable order."""
  for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, root)):
    dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
    for name in sorted(filenames):
      if name.endswith(".py"):
        yield os.path.relpath(os.path.join(dirpath, name), REPO)


def _module_name(path: str) -> str:
  """gradlab/sweep/grid.py -> gradlab.sweep.grid; gradlab/sweep/__init__.py -> gradlab.sweep."""
  name = path[:-3].replace(os.sep, ".")
  return name[: -len(".__init__")] if name.endswith(".__init__") else name


@functools.cache
def _tree(path: str) -> ast.Module:
  with open(os.path.join(REPO, path)) as f:
    return ast.parse(f.read(), filename=path)


@functools.cache
def _modules(root: str = "gradlab") -> dict[str, str]:
  """Module name -> path of every module under `root`."""
  return {_module_name(p): p for p in _py_files(root)}


def _imports(path: str) -> list[tuple[int, str, list[str]]]:
  """Every import statement of `path`, at any depth: (line, base, imported names).

  ``import a.b`` gives (line, 'a.b', []); ``from a import b, c`` gives (line, 'a', ['b',
  'c']); relative imports are resolved to absolute names.
  """
  module = _module_name(path)
  package = module if path.endswith("__init__.py") else module.rpartition(".")[0]
  found = []
  for node in ast.walk(_tree(path)):
    if isinstance(node, ast.Import):
      found += [(node.lineno, alias.name, []) for alias in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        parts = package.split(".")
        base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
      found.append((node.lineno, base, [alias.name for alias in node.names]))
  return found


def _statement(base: str, names: list[str]) -> str:
  return f"from {base} import {', '.join(names)}" if names else f"import {base}"


def _imported_names(path: str) -> list[tuple[int, str, str]]:
  """(line, dotted name, statement) of everything `path` imports: ``from a import b``
  gives 'a' and 'a.b', so `from gradlab import viz` counts as importing gradlab.viz."""
  out = []
  for line, base, names in _imports(path):
    statement = _statement(base, names)
    out.append((line, base, statement))
    out += [(line, f"{base}.{name}", statement) for name in names if name != "*"]
  return out


def _imports_of(path: str, targets: tuple[str, ...]) -> list[str]:
  """'path:line: statement' for each import statement of `path` that imports a target or
  anything under it (at any depth: function-local imports count)."""
  hits = {f"{path}:{line}: {statement}" for line, name, statement in _imported_names(path)
          if any(name == t or name.startswith(t + ".") for t in targets)}
  return sorted(hits, key=lambda hit: int(hit.split(":")[1]))


def _import_graph(root: str = "gradlab") -> dict[str, set[str]]:
  """Module -> modules of `root` it imports (module-level and function-local).

  ``from pkg import submodule`` is an edge to the submodule only; ``from pkg import name``
  (not a module) is an edge to pkg; ``import a.b.c`` is an edge to the longest of a.b.c,
  a.b, a that is a module of `root`.
  """
  mods = _modules(root)

  def resolve(name: str) -> str:
    while name and name not in mods:
      name = name.rpartition(".")[0]
    return name

  graph: dict[str, set[str]] = {m: set() for m in mods}
  for module, path in mods.items():
    for _, base, names in _imports(path):
      subs = [f"{base}.{n}" for n in names]
      targets = [s for s in subs if s in mods]
      if len(targets) < len(subs) or not names:
        targets.append(base)
      for target in targets:
        resolved = resolve(target)
        if resolved and resolved != module:
          graph[module].add(resolved)
  return graph


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
  """Tarjan's strongly connected components of more than one node, each sorted."""
  index: dict[str, int] = {}
  low: dict[str, int] = {}
  stack: list[str] = []
  on_stack: set[str] = set()
  found: list[list[str]] = []

  def visit(v: str) -> None:
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph.get(v, ())):
      if w not in index:
        visit(w)
        low[v] = min(low[v], low[w])
      elif w in on_stack:
        low[v] = min(low[v], index[w])
    if low[v] == index[v]:
      component = []
      while True:
        w = stack.pop()
        on_stack.discard(w)
        component.append(w)
        if w == v:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for v in sorted(graph):
    if v not in index:
      visit(v)
  return found


def _cycle_edges(graph: dict[str, set[str]], component: list[str]) -> list[str]:
  """The import statements inside one cycle, 'path:line: statement', for the message."""
  inside = set(component)
  mods = _modules()
  hits = []
  for m in component:
    edges = graph[m] & inside
    hits += sorted({f"{mods[m]}:{line}: {statement}"
                    for line, name, statement in _imported_names(mods[m]) if name in edges},
                   key=lambda hit: int(hit.split(":")[1]))
  return hits


def test_no_import_cycles_in_gradlab():
  graph = _import_graph()
  cycles = _strongly_connected(graph)
  message = "\n".join(
    f"cycle {' <-> '.join(c)}:\n    " + "\n    ".join(_cycle_edges(graph, c)) for c in cycles)
  assert not cycles, f"{len(cycles)} import cycle(s) in gradlab/:\n{message}"


def test_tarjan_finds_a_cycle_and_only_cycles():
  graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
  assert _strongly_connected(graph) == [["a", "b", "c"]]


def test_no_file_over_400_lines():
  long = []
  for root in ("gradlab", "experiments"):
    for path in _py_files(root):
      with open(os.path.join(REPO, path)) as f:
        n = len(f.read().splitlines())
      if n > MAX_FILE_LINES:
        long.append(f"{path}: {n} lines")
  assert not long, f"files over {MAX_FILE_LINES} lines:\n  " + "\n  ".join(long)


def test_no_function_over_120_lines_in_gradlab():
  long = []
  for path in _py_files("gradlab"):
    for node in ast.walk(_tree(path)):
      if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        n = node.end_lineno - node.lineno + 1
        if n > MAX_FUNCTION_LINES:
          long.append(f"{path}:{node.lineno} {node.name}: {n} lines")
  assert not long, (f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(long))


# Run in a fresh interpreter: records who first imports matplotlib, then imports the engine.
_WHO_IMPORTS_MATPLOTLIB = """
import sys, traceback

class Spy:
  chain = None
  def find_spec(self, name, path=None, target=None):
    if name == "matplotlib" and Spy.chain is None:
      Spy.chain = [f"{f.filename}:{f.lineno}" for f in traceback.extract_stack()
                   if "gradlab" in f.filename]
    return None

sys.meta_path.insert(0, Spy())
import {module}
print("MATPLOTLIB" if "matplotlib" in sys.modules else "CLEAN")
for frame in reversed(Spy.chain or []):
  print("  from", frame)
"""


def test_sweep_engine_does_not_import_matplotlib():
  engine = os.path.join(REPO, "gradlab", "sweep", "engine.py")
  module = "gradlab.sweep.engine" if os.path.exists(engine) else "gradlab.sweep.executor"
  code = _WHO_IMPORTS_MATPLOTLIB.replace("{module}", module)
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 0, f"import {module} failed:\n{proc.stderr[-3000:]}"
  assert proc.stdout.startswith("CLEAN"), (
    f"import {module} imports matplotlib; first import (innermost first):\n{proc.stdout}")


def _matplotlib_use_calls(path: str) -> list[int]:
  """Lines of `path` that call matplotlib.use (however matplotlib or use was imported)."""
  module_aliases, use_aliases = set(), set()
  for node in ast.walk(_tree(path)):
    if isinstance(node, ast.Import):
      module_aliases |= {a.asname or a.name for a in node.names if a.name == "matplotlib"}
    elif isinstance(node, ast.ImportFrom) and node.module == "matplotlib":
      use_aliases |= {a.asname or a.name for a in node.names if a.name == "use"}
  lines = []
  for node in ast.walk(_tree(path)):
    if not isinstance(node, ast.Call):
      continue
    f = node.func
    if ((isinstance(f, ast.Attribute) and f.attr == "use" and isinstance(f.value, ast.Name)
         and f.value.id in module_aliases)
        or (isinstance(f, ast.Name) and f.id in use_aliases)):
      lines.append(node.lineno)
  return lines


def test_matplotlib_use_is_called_in_exactly_one_file():
  calls = {path: lines for path in _py_files("gradlab")
           if (lines := _matplotlib_use_calls(path))}
  where = "\n  ".join(f"{p}: line(s) {lines}" for p, lines in calls.items())
  assert len(calls) == 1, (
    f"matplotlib.use( is called in {len(calls)} files of gradlab/ (want exactly one):\n  "
    f"{where}")


def _outside(path: str, *packages: str) -> bool:
  """Whether `path` lies outside every one of gradlab's `packages` (module or package)."""
  module = _module_name(path)
  return not any(module == f"gradlab.{p}" or module.startswith(f"gradlab.{p}.")
                 for p in packages)


def test_only_viz_imports_matplotlib():
  bad = [hit for path in _py_files("gradlab") if _outside(path, "viz")
         for hit in _imports_of(path, ("matplotlib", "mpl_toolkits"))]
  assert not bad, "matplotlib imported outside gradlab/viz/:\n  " + "\n  ".join(bad)


def test_only_viz_imports_gradlab_viz():
  bad = [hit for path in _py_files("gradlab") if _outside(path, "viz")
         for hit in _imports_of(path, ("gradlab.viz",))]
  assert not bad, "gradlab.viz imported from below it:\n  " + "\n  ".join(bad)


def test_only_viz_and_report_import_gradlab_report():
  bad = [hit for path in _py_files("gradlab") if _outside(path, "viz", "report")
         for hit in _imports_of(path, ("gradlab.report",))]
  assert not bad, "gradlab.report imported from below it:\n  " + "\n  ".join(bad)


def test_config_does_not_import_the_optimizers():
  paths = [p for p in _py_files("gradlab") if not _outside(p, "config")]
  assert paths, "gradlab/config.py is missing"
  bad = [hit for path in paths for hit in _imports_of(path, ("gradlab.optim",))]
  assert not bad, "config imports the optimizer registry:\n  " + "\n  ".join(bad)


def test_low_floors_do_not_import_upper_floors():
  low = [p for p in _py_files("gradlab") if not _outside(p, *LOW_PACKAGES, *LOW_MODULES)]
  assert len(low) > len(LOW_MODULES)
  bad = [hit for path in low for hit in _imports_of(path, UPPER_FLOORS)]
  assert not bad, (f"a low floor imports one of {', '.join(UPPER_FLOORS)}:\n  "
                   + "\n  ".join(bad))
