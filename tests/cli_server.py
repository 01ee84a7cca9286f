"""A fork server for the command-line tests: `conftest.run_cli` sends it one command per
line and gets back its exit status, stdout and stderr.

Every command-line test used to start a fresh `python -m experiments.X`, and most of its
2-3 s went to importing jax, pandas, flax and optax before the one line of bad input
was even read. This server imports those once (third-party modules only: nothing that
defines absl flags, and no JAX backend is started), then forks a child per command. The
child runs the module as ``__main__`` exactly as ``python -m`` does (`runpy`), in its own
process, so its flags, exit status and output are its own; it writes stdout and stderr
to files the server reads back.

Protocol: one JSON object per line on stdin ({"module", "args", "cwd", "env"}), one JSON
object per line on stdout ({"returncode", "stdout", "stderr"}).
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import tempfile
import traceback

import absl.app  # noqa: F401  (imported once here, for every child)
import flax.linen  # noqa: F401
import jax  # noqa: F401
import jax.numpy  # noqa: F401
import ml_collections  # noqa: F401
import numpy  # noqa: F401
import optax  # noqa: F401
import pandas  # noqa: F401


def _child(request: dict, out_path: str, err_path: str) -> None:
  """Runs in the forked child; never returns."""
  code = 1
  try:
    out = os.open(out_path, os.O_WRONLY)
    err = os.open(err_path, os.O_WRONLY)
    os.dup2(out, 1)
    os.dup2(err, 2)
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as `python -m` has it (here it was tests/)
    os.environ.update(request.get("env") or {})
    sys.argv = [request["module"], *request["args"]]
    try:
      runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
      code = 0
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
      if not isinstance(e.code, (int, type(None))):
        print(e.code, file=sys.stderr)
  except BaseException:  # noqa: BLE001 - report it as python would, then exit 1
    traceback.print_exc()
    code = 1
  finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
  for line in sys.stdin:
    request = json.loads(line)
    with tempfile.TemporaryDirectory() as tmp:
      out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
      for path in (out_path, err_path):
        open(path, "w").close()
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        _child(request, out_path, err_path)
      _, status = os.waitpid(pid, 0)
      with open(out_path, errors="replace") as f:
        out = f.read()
      with open(err_path, errors="replace") as f:
        err = f.read()
    reply = {"returncode": os.waitstatus_to_exitcode(status), "stdout": out, "stderr": err}
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
  serve()
