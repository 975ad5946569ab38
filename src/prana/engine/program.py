"""A secure program: a plain `jax.numpy` function plus who supplies each input and who receives each output.

The same function runs two ways:

- `program.plaintext(inputs)` runs it with jax on the CPU, in the clear. That is the test oracle.
- `CommitteeSession.run(program, ...)` compiles it with SPU and runs it as an MPC program in which every
  input is secret-shared and every output is revealed only to its named recipients.

An input's owner is a committee member's party name or `client:<name>` for an outside input client.
"""

from __future__ import annotations

import hashlib
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

RING_DTYPES = {32: ("int32", "float32"), 64: ("int64", "float64")}


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
    of `outputs`. `ring_bits` selects the SPU ring (FM32 or FM64), `fraction_bits` its fixed point.
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
            raise ValueError("ring_bits must be 32 or 64")
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
