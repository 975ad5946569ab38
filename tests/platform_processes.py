"""A hub and its stations as real `prana hub start` / `prana station start` processes, for the platform tests
(one set-up instead of one per test module)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from prana.config import Federation
from prana.engine.local import wait_for_port

SRC = Path(__file__).resolve().parents[1] / "src"


class Platform:
    """`stations` maps a station's name to its station.toml. Each process logs to `<root>/<name>.log`, runs in
    its own process group and is killed when the platform stops. `run(...)` is the `prana` command line."""

    def __init__(self, root: Path, federation_path: Path, stations: dict[str, Path], *, columns: int = 200) -> None:
        self.root, self.federation_path = Path(root), Path(federation_path)
        self.federation = Federation.load(self.federation_path)
        self.hub = "https://" + self.federation.party("hub").address
        self.env = {"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "PRANA_LOG_DIR": str(self.root / "logs"),
                    "COLUMNS": str(columns)}
        self.commands = {"hub": ["hub", "start", "--federation", str(self.federation_path), "--state",
                                 str(self.root / "hub-state")]}
        self.commands.update({name: ["station", "start", "--config", str(config)] for name, config in stations.items()})
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self, name: str | None = None, wait: float = 60.0) -> "Platform":
        """Start one process, or (no name) the hub and every station, then wait for the hub's port."""
        for each in [name] if name else list(self.commands):
            with open(self.root / f"{each}.log", "a") as log:
                self.processes[each] = subprocess.Popen([sys.executable, "-m", "prana", *self.commands[each]],
                                                        stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                                        start_new_session=True)
        if name in (None, "hub") and not wait_for_port(self.federation.party("hub").address, wait):
            raise TimeoutError("the hub did not start")
        return self

    def kill(self, name: str) -> None:
        """SIGKILL one process (and its session workers), as a crash would."""
        process = self.processes[name]
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        for name in list(self.processes):
            self.kill(name)

    def run(self, *args: str, timeout: float = 300, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "prana", *args], capture_output=True, text=True, env=self.env,
                              cwd=cwd, timeout=timeout)

    def common(self, me: str) -> list[str]:
        """The options every analyst command takes: hub, federation and identity."""
        return ["--hub", self.hub, "--federation", str(self.federation_path), "--as", me]
