"""A secure program: a plain `jax.numpy` function plus who supplies each input and who receives each output.

The same function runs two ways:

- `program.plaintext(inputs)` runs it with jax on the CPU, in the clear. That is the test oracle.
- `CommitteeSession.run(program, ...)` compiles it with SPU and runs it as an MPC program in which every
  input is secret-shared and every output is revealed only to its named recipients.

An input's owner is a committee member's party name or `client:<name>` for an outside input client.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

import jax
import numpy as np

from prana.errors import InputValidationError

# Secure programs declare int64/float64 inputs for the 64-bit ring. Without x64, jax would silently trace
# them as 32-bit, so the plaintext oracle would wrap where the ring does not, and the compiled program would
# expect other dtypes than the shares carry. prana therefore runs jax with 64-bit types enabled.
jax.config.update("jax_enable_x64", True)

# The 128-bit ring (FM128) carries the same int64/float64 arrays as the 64-bit one; it exists for programs
# that need a wide fixed point (exact federated statistics: 48 fraction bits and a 2**78 integer range).
RING_DTYPES = {32: ("int32", "float32"), 64: ("int64", "float64"), 128: ("int64", "float64")}


@dataclass(frozen=True)
class SecureInput:
    """One argument of the program: its name, owner, shape and dtype."""

    name: str
    owner: str
    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class SecureOutput:
    """One result of the program and the parties to whom it is revealed."""

    name: str
    recipients: tuple[str, ...]


@dataclass
class SecureProgram:
    """A jax.numpy function with its input contract and output routing.

    `function` takes the inputs positionally, in the order of `inputs`, and returns a tuple in the order
    of `outputs`. `ring_bits` selects the SPU ring (FM32, FM64 or FM128), `fraction_bits` its fixed point.
    """

    name: str
    function: Callable[..., Any]
    inputs: list[SecureInput]
    outputs: list[SecureOutput]
    ring_bits: int = 64
    fraction_bits: int = 18
    _compiled: Any = field(default=None, repr=False)
    _digest: str | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.ring_bits not in RING_DTYPES:
            raise ValueError("ring_bits must be 32, 64 or 128")
        names = [item.name for item in self.inputs] + [item.name for item in self.outputs]
        if len(set(names)) != len(names):
            raise ValueError(f"program {self.name}: input and output names must be unique")
        allowed = set(RING_DTYPES[self.ring_bits]) | {"bool"}
        for item in self.inputs:
            if item.dtype not in allowed:
                raise ValueError(f"program {self.name}: input {item.name} has dtype {item.dtype}, but a "
                                 f"{self.ring_bits}-bit ring takes {sorted(allowed)}")

    # -- checks ---------------------------------------------------------------------------------------------

    def check_input(self, name: str, value: np.ndarray) -> np.ndarray:
        """The array as the program expects it, or InputValidationError before anything is shared."""
        spec = self.input(name)
        array = np.asarray(value)
        if tuple(array.shape) != tuple(spec.shape):
            raise InputValidationError(f"input {name!r} of {self.name} has shape {tuple(array.shape)}; "
                                       f"the program expects {tuple(spec.shape)}")
        if array.dtype.name != spec.dtype:
            if spec.dtype.startswith("int") and array.dtype.kind in "iu":
                info = np.iinfo(spec.dtype)
                if array.size and (array.min() < info.min or array.max() > info.max):
                    raise InputValidationError(f"input {name!r} of {self.name} does not fit {spec.dtype}")
            elif not (spec.dtype.startswith("float") and array.dtype.kind in "iuf") and spec.dtype != "bool":
                raise InputValidationError(f"input {name!r} of {self.name} has dtype {array.dtype}; "
                                           f"the program expects {spec.dtype}")
            array = array.astype(spec.dtype)
        return np.require(array, requirements="C")

    def input(self, name: str) -> SecureInput:
        for item in self.inputs:
            if item.name == name:
                return item
        raise KeyError(name)

    def owners(self) -> set[str]:
        return {item.owner for item in self.inputs}

    def recipients(self) -> set[str]:
        return {party for item in self.outputs for party in item.recipients}

    # -- the two ways to run ------------------------------------------------------------------------------------

    def plaintext(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the function with jax in the clear: the oracle for the secure run."""
        import jax

        arrays = [self.check_input(item.name, inputs[item.name]) for item in self.inputs]
        with jax.default_device(jax.devices("cpu")[0]):
            result = self.function(*arrays)
        if not isinstance(result, tuple):
            result = (result,)
        return {spec.name: np.asarray(value) for spec, value in zip(self.outputs, result)}

    def compile(self) -> Any:
        """The SPU executable (compiled once per program object, then cached)."""
        with self._lock:
            if self._compiled is None:
                from spu import libspu
                from spu.utils import frontend

                examples = [np.zeros(item.shape, dtype=item.dtype) for item in self.inputs]
                names = [item.name for item in self.inputs]
                outputs = [item.name for item in self.outputs]

                def output_names(flat: list[Any]) -> list[str]:
                    if len(flat) != len(outputs):
                        raise ValueError(f"program {self.name} returns {len(flat)} values but declares "
                                         f"{len(outputs)} outputs")
                    return outputs

                with _compile_cache(frontend):
                    executable, _ = frontend.compile(frontend.Kind.JAX, self.function, examples, {}, names,
                                                     [libspu.Visibility.VIS_SECRET] * len(names), output_names)
                executable.name = self.name
                self._compiled = executable
            return self._compiled

    def digest(self) -> str:
        """SHA-256 of the compiled program: committee members check that they run the same thing."""
        executable = self.compile()
        if self._digest is None:
            self._digest = hashlib.sha256(executable.code).hexdigest()
        return self._digest


# -- the compile cache -----------------------------------------------------------------------------------------

_CACHE_LOCK = threading.Lock()


def compile_cache_folder() -> "os.PathLike[str] | None":
    """Where compiled programs are kept between processes: $PRANA_COMPILE_CACHE, else ~/.cache/prana/spu;
    PRANA_COMPILE_CACHE=off turns it off. The folder is 0700 and each file 0600, like the code that runs."""
    from pathlib import Path

    setting = os.environ.get("PRANA_COMPILE_CACHE", "")
    if setting.lower() in ("off", "0", "no"):
        return None
    return Path(setting) if setting else Path.home() / ".cache" / "prana" / "spu"


class _compile_cache:
    """SPU's compiler, memoised on disk by the SHA-256 of what it compiles: the XLA program text, the input
    visibilities, the compiler options and the spu version. SPU's own compile of a program takes seconds and
    gives the same bytes every time, so every later process (the next run, each committee member on this
    host) reads them instead. A changed or corrupted file cannot slip through unnoticed: the members compare
    the SHA-256 of the compiled program before anything is shared (`CommitteeSession.run`), so a program
    that differs from a peer's fails at that step; the folder is the user's own, as is the code that runs."""

    def __init__(self, frontend) -> None:
        self.api = frontend.spu_api
        self.original = None

    def __enter__(self):
        folder = compile_cache_folder()
        if folder is None:
            return self
        original = self.original = self.api.compile

        def cached(source, options):
            import spu

            key = hashlib.sha256()
            text = source.ir_txt
            settings = sorted((name, repr(getattr(options, name))) for name in dir(options)
                              if not name.startswith("_") and not callable(getattr(options, name)))
            for part in (spu.__version__.encode(), text.encode() if isinstance(text, str) else bytes(text),
                         repr(list(source.input_visibility)).encode(), repr(settings).encode()):
                key.update(len(part).to_bytes(8, "big") + part)
            path = folder / f"{key.hexdigest()}.mlir"
            try:
                return path.read_bytes()
            except OSError:
                pass
            code = original(source, options)
            try:
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                temporary = path.with_suffix(f".{os.getpid()}.tmp")
                descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(descriptor, "wb") as handle:
                    handle.write(code if isinstance(code, bytes) else bytes(code))
                os.replace(temporary, path)
            except OSError:
                pass                      # a read-only home: compile every time
            return code

        _CACHE_LOCK.acquire()
        self.api.compile = cached
        return self

    def __exit__(self, *exc) -> None:
        if self.original is not None:
            self.api.compile = self.original
            _CACHE_LOCK.release()
