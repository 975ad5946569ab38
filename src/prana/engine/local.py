"""Launch a whole committee on this machine: a fresh federation on 127.0.0.1 with ephemeral ports and TLS,
and one OS process per party. The tests, the demo and the benchmarks use this; nothing here is a
shortcut around the real protocol (each process opens real mutual-TLS links to the others).

    federation = local_federation(tmp, ["a", "b", "c"])
    with LocalCommittee() as committee:
        committee.spawn("a", "mypackage.module:function", {"federation": str(federation), ...})
        ...
        results = committee.wait(timeout=120)     # {"a": {...}, "b": {...}}

A target is `module:function`; it is called as `function(**kwargs)` in the child and must return a
JSON-serialisable dict. A PranaError in the child becomes {"error": sentence, "type": class name}; the
parent never sees a traceback. A child that overruns the timeout is killed.

Children are forked from a fork server (`prana.engine.forkserver`) that has imported the heavy libraries
once, so that a committee of many parties does not import them once per party; PRANA_FORKSERVER=0 starts
each child as a fresh interpreter instead (as does any failure to start the server). PRANA_PROFILE=DIR writes
each child's cProfile to DIR/<party>.job.prof.

Files: the job and result files (they carry inputs and outputs) are written 0600 and removed when the
committee closes, on every path; children run with umask 077. A committee given no `workdir` makes its own
temporary folder (0700) and removes it whole when it closes; a given `workdir` is the caller's, and keeps
only the children's logs.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from prana.engine.channel import free_ports
from prana.files import write_private
from prana.errors import PeerTimeout, PranaError


def wait_for_port(address: str, timeout: float = 30.0) -> bool:
    """Wait until something accepts TCP connections at host:port; False if nothing did in time."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, int(port)), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.1)
    return False


def local_federation(directory: Path | str, parties: list[str], *, name: str = "local") -> Path:
    """A fresh federation (CA, keys, certificates) for `parties` on 127.0.0.1 with free ports."""
    from prana.pki import create_federation

    addresses = {party: f"127.0.0.1:{port}" for party, port in zip(parties, free_ports(len(parties)))}
    return create_federation(Path(directory), name, addresses)


FORK_REPLY = 180.0     # how long the fork server may take to start (its imports) and fork one party


class _ForkServer:
    """The committee's end of `prana.engine.forkserver`: sends fork requests, follows the parties' exits."""

    def __init__(self, log_path: Path, environment: dict[str, str]) -> None:
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "prana.engine.forkserver"], stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log, env=environment,
                                            start_new_session=True)
        self.pids: dict[str, int] = {}
        self.exits: dict[int, int] = {}
        self.ended = False
        self.condition = threading.Condition()
        self.lock = threading.Lock()
        threading.Thread(target=self._follow, daemon=True, name="prana-forkserver").start()

    def _follow(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            with self.condition:
                if "exit" in message:
                    self.exits[int(message["pid"])] = int(message["exit"])
                else:
                    self.pids[str(message["party"])] = int(message["pid"])
                self.condition.notify_all()
        self.process.wait()
        with self.condition:          # the server died: its parties got SIGKILL with it
            self.ended = True
            self.condition.notify_all()

    def fork(self, party: str, request: dict[str, Any]) -> "_Forked | None":
        """The forked party, or None if the server could not fork it (the caller starts it directly)."""
        with self.lock:
            try:
                assert self.process.stdin is not None
                self.process.stdin.write((json.dumps({"party": party, **request}) + "\n").encode())
                self.process.stdin.flush()
            except (BrokenPipeError, OSError):
                return None
            deadline = time.monotonic() + FORK_REPLY
            with self.condition:
                while party not in self.pids and not self.ended and time.monotonic() < deadline:
                    self.condition.wait(timeout=1.0)
                pid = self.pids.pop(party, None)
        return None if pid is None else _Forked(self, pid)

    def exit_of(self, pid: int) -> int | None:
        with self.condition:
            if pid in self.exits:
                return self.exits[pid]
            return -signal.SIGKILL if self.ended else None

    def close(self) -> None:
        try:
            if self.process.stdin is not None:
                self.process.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class _Forked:
    """A party forked by the fork server, with the part of `subprocess.Popen` that the committee uses."""

    def __init__(self, server: _ForkServer, pid: int) -> None:
        self.server, self.pid = server, pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.server.exit_of(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.server.condition:
            while self.poll() is None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(f"party {self.pid}", timeout or 0.0)
                self.server.condition.wait(timeout=left if left is None else min(left, 1.0))
        assert self.returncode is not None
        return self.returncode


@dataclass
class _Child:
    party: str
    process: subprocess.Popen | _Forked
    result_path: Path
    log_path: Path


_WARM: dict[str, _ForkServer] = {}        # the fork server kept warm for `LocalCommittee(warm=True)`
_WARM_LOCK = threading.Lock()


def _warm_server(environment: dict[str, str]) -> _ForkServer:
    """The fork server that outlives committees (one per import path, so its preloaded code is the code each
    party would import), started on first use and closed when this process exits."""
    key = environment.get("PYTHONPATH", "")
    with _WARM_LOCK:
        server = _WARM.get(key)
        if server is None or server.ended:
            folder = Path(tempfile.mkdtemp(prefix="prana-forkserver-"))
            server = _WARM[key] = _ForkServer(folder / "forkserver.log", environment)
            if len(_WARM) == 1:
                atexit.register(_close_warm)
        return server


def _close_warm() -> None:
    with _WARM_LOCK:
        for server in _WARM.values():
            server.close()
            shutil.rmtree(Path(server.log_path).parent, ignore_errors=True)
        _WARM.clear()


@dataclass
class LocalCommittee:
    """A set of party processes started by this process, each killed at exit if still running.

    `warm`: fork the parties from a fork server that stays up for the next committee of this process (a
    notebook's second fit does not wait for the server's imports again, about 1.5 s). Each party is still a
    fresh process with its own memory, certificates and links; the server never sees a job's inputs."""

    workdir: Path | None = None
    extra_path: list[str] = field(default_factory=list)
    children: dict[str, _Child] = field(default_factory=dict)
    warm: bool = False

    def __post_init__(self) -> None:
        self._owned = self.workdir is None
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="prana-local-"))
        self.workdir = Path(self.workdir)
        self._server: _ForkServer | None = None
        self._forking = os.environ.get("PRANA_FORKSERVER", "1") != "0"

    def spawn(self, party: str, target: str, kwargs: dict[str, Any], env: dict[str, str] | None = None) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        job = self.workdir / f"{party}.job.json"
        write_private(job, json.dumps({"target": target, "kwargs": kwargs}))
        result = self.workdir / f"{party}.result.json"
        result.unlink(missing_ok=True)          # a party spawned again must not be read by its last result
        log = self.workdir / f"{party}.log"
        environment = dict(os.environ)
        environment.setdefault("PRANA_LOG_DIR", str(self.workdir / "logs"))
        paths = [*self.extra_path, *([environment["PYTHONPATH"]] if environment.get("PYTHONPATH") else [])]
        if paths:
            environment["PYTHONPATH"] = os.pathsep.join(paths)
        environment.update(env or {})
        environment["PRANA_PARENT_PID"] = str(os.getpid())
        forked = self._fork(party, {"job": str(job), "result": str(result), "log": str(log), "env": environment,
                                    "cwd": os.getcwd()}, environment)
        if forked is not None:
            self.children[party] = _Child(party, forked, result, log)
            return
        with open(log, "wb") as handle:
            process = subprocess.Popen([sys.executable, "-m", "prana.engine.local", str(job), str(result)],
                                       stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env=environment, start_new_session=True)
        self.children[party] = _Child(party, process, result, log)

    def _fork(self, party: str, request: dict[str, Any], environment: dict[str, str]) -> _Forked | None:
        if not self._forking:
            return None
        if self.warm:
            forked = _warm_server(environment).fork(f"{party}@{secrets.token_hex(8)}", request)
            if forked is None:
                self._forking = False
            return forked
        if self._server is None:
            self._server = _ForkServer(self.workdir / "forkserver.log", environment)
        forked = self._server.fork(party, request)
        if forked is None:                      # the server failed (its log says why): start parties directly
            self._forking = False
        return forked

    def kill(self, party: str) -> None:
        """Kill one party at once (SIGKILL), as a crash would."""
        child = self.children[party]
        if child.process.poll() is None:
            try:
                os.killpg(child.process.pid, signal.SIGKILL)
            except ProcessLookupError:          # it ended just now
                pass
            child.process.wait(timeout=10)

    def wait(self, timeout: float, parties: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Wait for the children (all, or `parties`); kill any still running at the deadline."""
        deadline = time.monotonic() + timeout
        results: dict[str, dict[str, Any]] = {}
        for party in parties or list(self.children):
            child = self.children[party]
            try:
                child.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(party)
                results[party] = {"error": f"{party} did not finish within {timeout:g} s", "type": "PeerTimeout",
                                  "returncode": None}
                continue
            results[party] = self._result(child)
        return results

    def poll(self, party: str) -> dict[str, Any] | None:
        """The party's result if its process has ended, else None (never waits, never kills)."""
        child = self.children[party]
        return None if child.process.poll() is None else self._result(child)

    def _result(self, child: _Child) -> dict[str, Any]:
        if child.result_path.exists():
            data = json.loads(child.result_path.read_text())
            data["returncode"] = child.process.returncode
            return data
        tail = child.log_path.read_text(errors="replace").strip().splitlines()[-3:] if child.log_path.exists() else []
        return {"error": f"{child.party} exited with code {child.process.returncode} without a result",
                "type": "ProcessDied", "returncode": child.process.returncode, "log_tail": tail}

    def log(self, party: str) -> str:
        path = self.children[party].log_path
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        """Kill every child still running and remove the files that carried inputs and outputs (the whole
        folder if this committee made it)."""
        for party in list(self.children):
            self.kill(party)
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._owned:
            shutil.rmtree(self.workdir, ignore_errors=True)
            return
        for child in self.children.values():
            for path in (self.workdir / f"{child.party}.job.json", child.result_path,
                         Path(str(child.result_path) + ".tmp")):
                path.unlink(missing_ok=True)

    def __enter__(self) -> "LocalCommittee":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def error_for(party: str, result: dict[str, Any]) -> PranaError | None:
    """The exception a child's result stands for, or None if it succeeded.

    A child that died without a result (SPU's native code may crash, e.g. with SIGSEGV, when a peer vanishes
    in the middle of an MPC run) becomes a PeerAborted sentence: the supervising process stays alive.
    """
    from prana import errors

    if "error" not in result:
        return None
    kind = result.get("type")
    if kind == "ProcessDied":
        code = result.get("returncode")
        if code == 75:   # prana.engine.session.PEER_VANISHED_EXIT
            return errors.PeerAborted(f"a peer of {party} closed its connection in the middle of the MPC run (it "
                                      "stopped or crashed); nothing was written", peer=party)
        how = f"signal {-code}" if isinstance(code, int) and code < 0 else f"exit code {code}"
        return errors.PeerAborted(f"{party}'s MPC engine stopped abnormally ({how}); a peer most likely failed in "
                                  "the middle of the computation, and nothing was written", peer=party)
    cls = getattr(errors, str(kind), None)
    message = str(result["error"])
    if isinstance(cls, type) and issubclass(cls, errors.ProtocolError):
        return cls(message, peer=party)
    if isinstance(cls, type) and issubclass(cls, PranaError):
        return cls(message)
    return PranaError(f"{party}: {message}")


def run_isolated(target: str, kwargs: dict[str, Any], *, party: str, timeout: float,
                 workdir: Path | None = None) -> dict[str, Any]:
    """Run `target(**kwargs)` in a child process and return its result; its failure becomes our exception.

    The SPU runtime runs native code that can take its whole process down when a peer dies mid-run. Running
    each session in a child keeps the caller (a CLI command, a long-running server) alive and lets it report
    one clear sentence.
    """
    with LocalCommittee(workdir=workdir) as committee:
        committee.spawn(party, target, kwargs)
        result = committee.wait(timeout)[party]
    error = error_for(party, result)
    if error is not None:
        raise error
    return result


def _die_with_parent() -> None:
    """A party process must not outlive the process that supervises it (a killed station takes its session
    workers with it), so ask Linux to SIGKILL us when our parent dies."""
    parent = int(os.environ.get("PRANA_PARENT_PID", "0") or 0)
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)          # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if parent and os.getppid() != parent:      # the parent died before prctl took effect
        os._exit(3)


def _main(job_path: str, result_path: str) -> int:
    _die_with_parent()
    os.umask(0o077)
    job = json.loads(Path(job_path).read_text())
    module_name, _, function_name = job["target"].partition(":")
    result: dict[str, Any]
    code = 0
    try:
        function = getattr(importlib.import_module(module_name), function_name)
        if os.environ.get("PRANA_PROFILE"):
            import cProfile
            profiler = cProfile.Profile()
            result = profiler.runcall(function, **job["kwargs"]) or {}
            profiler.dump_stats(os.path.join(os.environ["PRANA_PROFILE"], Path(job_path).stem + ".prof"))
        else:
            result = function(**job["kwargs"]) or {}
    except PranaError as exc:
        result = {"error": str(exc), "type": type(exc).__name__}
        code = 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one sentence
        result = {"error": f"{type(exc).__name__}: {exc}", "type": "InternalError"}
        code = 2
    temporary = Path(result_path + ".tmp")
    write_private(temporary, json.dumps(result))
    temporary.replace(result_path)
    return code


if __name__ == "__main__":
    sys.stdout.flush()
    os._exit(_main(sys.argv[1], sys.argv[2]))


@contextmanager
def services(root: Path, commands: dict[str, list[str]], hub_address: str) -> Iterator[None]:
    """Start `prana <command>` processes (logs in root/<name>.log), wait for the hub, stop them all at the end
    (the demos, and the auction through a hub on one machine)."""

    processes = []
    try:
        for name, args in commands.items():
            log = open(root / f"{name}.log", "w")
            processes.append(subprocess.Popen([sys.executable, "-m", "prana", *args], stdout=log,
                                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        if not wait_for_port(hub_address, 60):
            raise PeerTimeout(f"the hub did not start listening on {hub_address} within 60 s")
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
