"""Keep SPU's and brpc's native log lines out of the user's terminal.

SPU (spdlog) and brpc (glog) write diagnostic lines straight to the process's stdout and stderr file
descriptors. prana's user sees one clear sentence per error instead; the native lines go to a log file
(`$PRANA_LOG_DIR`, default a `prana-logs` folder in the system temp dir), which an operator can read.
Set `PRANA_NATIVE_LOGS=console` to see them live.
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import threading
from pathlib import Path

_lock = threading.Lock()
_log_path: Path | None = None


def log_directory() -> Path:
    directory = Path(os.environ.get("PRANA_LOG_DIR", Path(tempfile.gettempdir()) / "prana-logs"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def quiet_native_logs() -> Path | None:
    """Route native log output of this process to a file, once. Returns the file (None if disabled)."""
    global _log_path
    with _lock:
        if _log_path is not None or os.environ.get("PRANA_NATIVE_LOGS") == "console":
            return _log_path
        from spu import libspu

        path = log_directory() / f"engine-{os.getpid()}.log"
        options = libspu.logging.LogOptions()
        options.enable_console_logger = False
        options.system_log_path = str(path)
        options.log_level = libspu.logging.LogLevel.WARN
        libspu.logging.setup_logging(options)
        native = os.open(path.with_suffix(".native.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            python_stderr_is_fd2 = sys.stderr is not None and sys.stderr.fileno() == 2
        except (AttributeError, ValueError, io.UnsupportedOperation):
            python_stderr_is_fd2 = False
        if python_stderr_is_fd2:
            saved = os.dup(2)
            sys.stderr.flush()
            sys.stderr = io.TextIOWrapper(os.fdopen(saved, "wb", buffering=0), encoding="utf-8",
                                          errors="replace", write_through=True)
        os.dup2(native, 2)
        os.close(native)
        _log_path = path
        return path
