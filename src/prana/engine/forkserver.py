"""A warm start for party processes: one server process imports the heavy libraries once and forks every
party of a `LocalCommittee` from itself.

Why: each party process used to import numpy, pandas, jax and prana's analyses itself, about 2 s of CPU.
A federated fit over 10 sites has 11 processes, so on a two-core machine the imports alone took about
11 s of the fit's wall time (measured; see benchmarks/federated.py). Forked from a server that has done the
imports, a party starts in a few milliseconds and imports only SPU (0.1 s).

Each party is still its own OS process with its own memory, certificates and TLS links, exactly as
before: the server only saves the imports. It never sees a party's inputs (those are in the job file,
which the child reads after the fork) and never runs a computation.

Why forking is safe here:
- The server holds no thread that could own a lock at the fork. It preloads only libraries that start no
  thread of their own (numpy's OpenBLAS pool and pyarrow's allocator thread have fork handlers), and it
  checks before every fork that SPU is not loaded: SPU's native library starts threads (brpc's samplers)
  when it loads, so each party imports SPU after the fork.
- Every party draws fresh randomness: Python's `random` reseeds in a forked child, `secrets`, OpenSSL and
  SPU draw from the operating system, and no prana module keeps random state at import
  (tests/test_engine.py checks that two forked parties' shares of the same value differ).
- The child takes the environment, working folder and import path of its own request, resets the
  temporary-folder cache, and gets SIGKILL when the server dies (which gets SIGKILL when the committee's
  process dies), as a directly started party did.

The server speaks JSON lines: on stdin, one request per party ({"party", "job", "result", "log", "env",
"cwd"}); on stdout, {"party", "pid"} after each fork and {"pid", "exit"} when a party ends ("exit" as in
`subprocess`: negative for a signal). At the end of stdin it kills its parties and exits.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
from typing import Any

PRELOAD = ("numpy", "pandas", "jax", "jax.numpy", "cryptography.x509",
           "prana.engine.session", "prana.engine.clients", "prana.engine.program", "prana.analyses.tables",
           "prana.analyses.federated.local", "prana.analyses.federated.rounds", "prana.analyses.kmeans.member",
           "prana.analyses.compare.member")
THREADED = ("spu",)              # modules that start threads when they load: never in the server


def preload() -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    importlib.import_module("prana.engine.program").source_digest()   # once here, not in every party (33 ms)
    loaded = [name for name in THREADED if name in sys.modules]
    if loaded:
        raise RuntimeError(f"the fork server must not load {loaded[0]} (it starts threads); a preloaded module "
                           "imports it at module level")


def _exit_code(status: int) -> int:
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _child(request: dict[str, Any], server_pid: int) -> None:
    """In the forked party: become its own session with its own streams, environment and folder, then run
    the job as `prana.engine.local` would."""
    import tempfile

    os.setsid()
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    null = os.open(os.devnull, os.O_RDONLY)
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    environment = dict(request["env"])
    environment["PRANA_PARENT_PID"] = str(server_pid)     # our parent is the server
    os.environ.clear()
    os.environ.update(environment)
    for entry in reversed([part for part in environment.get("PYTHONPATH", "").split(os.pathsep) if part]):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    tempfile.tempdir = None
    os.chdir(request["cwd"])
    from prana.engine.local import _main

    sys.stdout.flush()
    os._exit(_main(request["job"], request["result"]))


def serve() -> int:
    from prana.engine.local import _die_with_parent

    _die_with_parent()
    preload()
    signal.signal(signal.SIGINT, signal.SIG_IGN)       # the committee decides when we stop
    children: set[int] = set()
    buffer = b""
    open_input = True
    me = os.getpid()

    def say(message: dict[str, Any]) -> None:
        os.write(1, (json.dumps(message) + "\n").encode())

    while open_input or children:
        if open_input:
            readable, _, _ = select.select([0], [], [], 0.05)
            if readable:
                chunk = os.read(0, 65536)
                if not chunk:
                    open_input = False
                    for pid in children:                # the committee is gone: so are its parties
                        try:
                            os.killpg(pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    request = json.loads(line)
                    preload()                           # checks again that nothing threaded was loaded
                    pid = os.fork()
                    if pid == 0:
                        try:
                            _child(request, me)
                        finally:
                            os._exit(70)
                    children.add(pid)
                    say({"party": request["party"], "pid": pid})
        else:
            select.select([], [], [], 0.05)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid == 0:
                break
            children.discard(pid)
            say({"pid": pid, "exit": _exit_code(status)})
    return 0


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(serve())         # no interpreter teardown (jax, pandas): the committee waits for this exit
