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
    # what the program is made of, when a `recipe` factory made it: see `recipe`
    made_by: tuple[Any, ...] | None = field(default=None, repr=False)
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
        """The SPU executable (compiled once per program object, then cached; a `recipe` program is also kept
        on disk and read back by later processes without tracing)."""
        with self._lock:
            if self._compiled is None:
                from spu import libspu
                from spu.utils import frontend

                names = [item.name for item in self.inputs]
                outputs = [item.name for item in self.outputs]
                kept = _recipe_path(self)
                code = _read_kept(kept)
                if code is not None:
                    self._compiled = libspu.Executable(name=self.name, input_names=names, output_names=outputs,
                                                       code=code)
                    return self._compiled
                examples = [np.zeros(item.shape, dtype=item.dtype) for item in self.inputs]

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
                if kept is not None:
                    _keep(kept, executable.code)
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
            code = _read_kept(path)
            if code is None:
                code = original(source, options)
                _keep(path, code)
            return code

        _CACHE_LOCK.acquire()
        self.api.compile = cached
        return self

    def __exit__(self, *exc) -> None:
        if self.original is not None:
            self.api.compile = self.original
            _CACHE_LOCK.release()


def _read_kept(path: "os.PathLike[str] | None") -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _keep(path: "os.PathLike[str]", code: Any) -> None:
    """Write a compiled program into the cache folder (0700, the file 0600, atomically)."""
    from pathlib import Path

    path = Path(path)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(code if isinstance(code, bytes) else bytes(code))
        os.replace(temporary, path)
    except OSError:
        pass                      # a read-only home: compile every time


# -- programs kept by recipe ----------------------------------------------------------------------------------
#
# jax's tracing of a program takes as long as SPU's compile of it (a Cox step: 2 s of CPU in every member, every
# run), and the text cache above needs the trace for its key. A factory marked `recipe` promises that the
# program it returns depends on nothing but its arguments and prana's code. Its program is then kept under the
# SHA-256 of prana's source files, the jax, jaxlib, numpy and spu versions, the factory's name and a
# canonical encoding of its arguments (`fingerprint`), and read back with no tracing at all. An argument that
# has no canonical encoding (a function, an object) leaves the program out of this cache.


def recipe(factory: Callable[..., SecureProgram]) -> Callable[..., SecureProgram]:
    """Mark `factory` as pure: equal arguments give the same program (see above)."""
    import functools

    @functools.wraps(factory)
    def make(*args: Any, **kwargs: Any) -> SecureProgram:
        program = factory(*args, **kwargs)
        program.made_by = (f"{factory.__module__}:{factory.__qualname__}", args, tuple(sorted(kwargs.items())))
        return program

    return make


def fingerprint(value: Any) -> bytes:
    """A canonical, unambiguous encoding of plain data: None, bools, numbers, strings, bytes, tuples, lists,
    dicts, numpy arrays and scalars, enums and dataclasses of these. TypeError for anything else."""
    import dataclasses
    import enum

    def tagged(tag: bytes, body: bytes) -> bytes:
        return tag + len(body).to_bytes(8, "big") + body

    if value is None:
        return b"N"
    if isinstance(value, (np.ndarray, np.generic)):          # before float: np.float64 is a float, but jax
        array = np.ascontiguousarray(value)                  # types it strongly, a Python float weakly
        if array.dtype.hasobject:
            raise TypeError("an object array has no canonical encoding")
        return tagged(b"a" if isinstance(value, np.ndarray) else b"g",
                      array.dtype.str.encode() + b"|" + repr(array.shape).encode() + b"|" + array.tobytes())
    if isinstance(value, bool):
        return tagged(b"b", b"1" if value else b"0")
    if isinstance(value, enum.Enum):
        return tagged(b"e", f"{type(value).__module__}.{type(value).__qualname__}.{value.name}".encode())
    if isinstance(value, int):
        return tagged(b"i", str(value).encode())
    if isinstance(value, float):
        return tagged(b"f", float(value).hex().encode())
    if isinstance(value, str):
        return tagged(b"s", value.encode())
    if isinstance(value, bytes):
        return tagged(b"y", value)
    if isinstance(value, (tuple, list)):
        return tagged(b"t" if isinstance(value, tuple) else b"l", b"".join(fingerprint(item) for item in value))
    if isinstance(value, dict):
        items = sorted((fingerprint(key), fingerprint(item)) for key, item in value.items())
        return tagged(b"d", b"".join(key + item for key, item in items))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        name = f"{type(value).__module__}.{type(value).__qualname__}".encode()
        fields = b"".join(fingerprint(item.name) + fingerprint(getattr(value, item.name))
                          for item in dataclasses.fields(value))
        return tagged(b"c", tagged(b"s", name) + fields)
    raise TypeError(f"{type(value).__name__} has no canonical encoding")


_SOURCE: list[str] = []


def source_digest() -> str:
    """SHA-256 of prana's own source files (names and contents) and of the versions of what traces and
    compiles a program."""
    if not _SOURCE:
        from importlib import metadata
        from pathlib import Path

        import prana

        digest = hashlib.sha256()
        root = Path(prana.__file__).resolve().parent
        for path in sorted(root.rglob("*.py")):
            name = path.relative_to(root).as_posix().encode()
            body = path.read_bytes()
            digest.update(len(name).to_bytes(8, "big") + name + len(body).to_bytes(8, "big") + body)
        for package in ("jax", "jaxlib", "numpy", "spu"):
            try:
                version = metadata.version(package)
            except metadata.PackageNotFoundError:
                version = "-"
            digest.update(f"{package}={version};".encode())
        digest.update(f"x64={jax.config.jax_enable_x64}".encode())
        _SOURCE.append(digest.hexdigest())
    return _SOURCE[0]


def _recipe_path(program: SecureProgram) -> "os.PathLike[str] | None":
    folder = compile_cache_folder()
    if folder is None or program.made_by is None:
        return None
    try:
        made = fingerprint((program.made_by, program.name, program.ring_bits, program.fraction_bits,
                            [(item.name, item.owner, tuple(item.shape), item.dtype) for item in program.inputs],
                            [(item.name, tuple(item.recipients)) for item in program.outputs]))
    except TypeError:
        return None
    key = hashlib.sha256(source_digest().encode() + made).hexdigest()
    return folder / f"{key}.recipe.mlir"
