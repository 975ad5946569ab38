"""Shared by the MPyC anchor scripts (mpyc_kmeans.py, mpyc_auction.py): 3 parties as 3 OS processes.

Each script is both the driver and a party. Run with no MPyC party flags it is the driver: run_parties
starts the 3 parties as subprocesses of the same script file (`python <script> ... -M 3 -I i -B b` for a
free base port b; a party finds this module the same way the driver did, as the script's folder is
first on its sys.path), polls them, kills them all if one exits non-zero, --timeout passes or the
driver itself is interrupted, logs the stderr of parties 1 and 2 when they failed (party 0's stderr is
passed through as it runs), logs party 0's MPyC log lines and reads its ONE JSON line, adding
wall_seconds_whole_run (launch to last exit). Run with party flags, it is one party (dispatch).

Nothing here imports MPyC: its runtime parses sys.argv on import, which only a party may let it do.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PARTIES = 3


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def machine_busy_seconds() -> float | None:
    """CPU seconds spent busy by the whole machine so far (all processes), from /proc/stat."""
    try:
        with open("/proc/stat") as f:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
        return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return None


def free_base_port() -> int:
    """A base port b with b, b+1, b+2 free (MPyC's parties 1 and 2 listen on b+1, b+2)."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            b = s.getsockname()[1]
        if b + PARTIES > 65535:
            continue
        socks = []
        try:
            for i in range(PARTIES):
                s = socket.socket()
                socks.append(s)
                s.bind(("", b + i))
            return b
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range")


@dataclass
class PartyRun:
    """How the 3 party processes ended, as run_parties saw it."""

    timeout: float
    returncodes: list[int | None] = field(default_factory=list)  # -9: killed (by the driver, or by another)
    bad: list[int] = field(default_factory=list)     # the parties seen exited non-zero while others still ran
    timed_out: bool = False
    interrupted: str | None = None                    # the exception's type name if the driver was interrupted
    result: dict | None = None                        # party 0's last JSON line, plus wall_seconds_whole_run
    wall: float = 0.0                                 # launch to the last party's exit (s)

    @property
    def failure(self) -> str | None:
        """Why the run failed, in words; None when every party exited 0 and party 0 printed its result."""
        if self.bad:
            return f"party {self.bad[0]} exited with status {self.returncodes[self.bad[0]]}"
        if self.timed_out:
            return f"timeout after {self.timeout:.0f} s"
        if self.interrupted is not None:
            return f"driver interrupted ({self.interrupted})"
        for i, rc in enumerate(self.returncodes):
            if rc != 0:                       # exited non-zero as the last one
                return f"party {i} exited with status {rc}"
        if self.result is None:
            return "party 0 printed no result"
        return None


def run_parties(script: str, argv: list[str], timeout: float, *, what: str, log_killed_stderr: bool) -> PartyRun:
    """Run `script` as the 3 MPyC parties with the driver's own argv; see the module docstring.

    what: the run's size, for the start-up line on stderr ("<script>: starting 3 MPyC parties
    (base port b) for <what>"). log_killed_stderr: also log the stderr of a party 1 or 2 that
    exited -9 (killed, e.g. by the driver after another party failed).
    """
    run = PartyRun(timeout=timeout)
    base = free_base_port()
    name = os.path.splitext(os.path.basename(script))[0]
    log(f"{name}: starting {PARTIES} MPyC parties (base port {base}) for {what}")
    t_start = time.perf_counter()
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix=f"{name}_") as tmp:
        procs, outs, errs = [], [], []
        try:
            for i in range(PARTIES):
                out = open(os.path.join(tmp, f"party{i}.out"), "w+")
                err = None if i == 0 else open(os.path.join(tmp, f"party{i}.err"), "w+")
                outs.append(out)
                errs.append(err)
                cmd = [sys.executable, os.path.abspath(script), *argv,
                       "-M", str(PARTIES), "-I", str(i), "-B", str(base)]
                procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err))
            while any(p.poll() is None for p in procs):
                run.bad = [i for i, p in enumerate(procs) if p.poll() not in (None, 0)]
                if run.bad:
                    break
                if time.perf_counter() - t_start > timeout:
                    run.timed_out = True
                    break
                time.sleep(0.2)
        except BaseException as exc:                 # e.g. Ctrl-C: never leave parties behind
            run.interrupted = type(exc).__name__
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        run.returncodes = [p.returncode for p in procs]
        quiet = (0,) if log_killed_stderr else (0, -9)
        for i in (1, 2):
            if i < len(procs) and procs[i].returncode not in quiet:
                errs[i].seek(0)
                log(f"--- party {i} exited {procs[i].returncode}; its stderr:\n{errs[i].read()}")
        if outs:
            outs[0].seek(0)
            lines = outs[0].read().splitlines()
        for f in outs + errs:
            if f:
                f.close()
    run.wall = time.perf_counter() - t_start
    for ln in lines:
        if not ln.startswith("{"):
            log(f"party 0 (MPyC log): {ln}")
    lines = [ln for ln in lines if ln.startswith("{")]
    if lines:
        run.result = json.loads(lines[-1])
        run.result["wall_seconds_whole_run"] = round(run.wall, 1)   # driver: launch to last party's exit
    return run


def dispatch(party_main: Callable[[], None], driver: Callable[[list[str]], None]) -> None:
    """Be one party if MPyC's party flags are on the command line, else the driver."""
    mpyc_party_flags = {"-I", "--index", "-M", "-P", "-C", "--config"}
    if any(a.split("=")[0] in mpyc_party_flags or a.startswith(("-I", "-M")) for a in sys.argv[1:]):
        party_main()
    else:
        driver(sys.argv[1:])
