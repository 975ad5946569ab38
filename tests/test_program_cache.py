"""Programs kept by recipe (`prana.engine.program.recipe`): a later process reads the compiled program back
without tracing it, and only when the factory, its arguments and prana's source are the same."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from prana.engine import program as programs
from prana.engine.program import SecureInput, SecureOutput, SecureProgram, fingerprint, recipe


@recipe
def scaled_sum(size: int, factor: float) -> SecureProgram:
    return SecureProgram(f"scaled-sum-{size}", lambda a, b: ((a + b) * factor,),
                         [SecureInput("a", "p0", (size,), "float64"), SecureInput("b", "p1", (size,), "float64")],
                         [SecureOutput("total", ("p0",))])


@dataclass(frozen=True)
class Pair:
    left: int
    right: int


def test_fingerprints_tell_apart_values_that_print_alike():
    values = [None, 1, 1.0, True, "1", b"1", (1,), [1], {"a": 1}, {"a": 1.0}, np.array([1]), np.array([1.0]),
              np.array([[1]]), np.array([1], dtype=np.int32), np.float64(1.0), 0.1 + 0.2, 0.3, ("a", "b"), ("ab",),
              Pair(1, 2), (1, 2), Pair(2, 1), np.arange(2000), np.arange(2000) + (np.arange(2000) == 1000)]
    encodings = [fingerprint(value) for value in values]
    assert len(set(encodings)) == len(values)
    assert fingerprint({"b": 2, "a": 1}) == fingerprint({"a": 1, "b": 2})
    for opaque in (lambda: 1, object(), np.array([object()])):
        with pytest.raises(TypeError):
            fingerprint(opaque)


def _no_tracing(monkeypatch):
    from spu.utils import frontend

    def traced(*args, **kwargs):
        raise AssertionError("the program was traced")

    monkeypatch.setattr(frontend, "compile", traced)


def test_a_recipe_program_is_read_back_without_tracing_and_runs_as_traced(tmp_path, monkeypatch):
    from spu.utils.simulation import Simulator

    from prana.engine.session import runtime_config

    monkeypatch.setenv("PRANA_COMPILE_CACHE", str(tmp_path))
    first = scaled_sum(3, 2.0)
    code = first.compile().code
    assert len(list(tmp_path.glob("*.recipe.mlir"))) == 1

    _no_tracing(monkeypatch)
    again = scaled_sum(3, 2.0)
    executable = again.compile()
    assert executable.code == code and again.digest() == first.digest()
    assert list(executable.input_names) == ["a", "b"] and list(executable.output_names) == ["total"]
    a, b = np.array([1.5, -2.0, 4.25]), np.array([0.5, 1.0, -0.25])
    total, = Simulator(3, runtime_config(3, 64, 18))(executable, a, b)
    assert np.allclose(total, again.plaintext({"a": a, "b": b})["total"], atol=1e-4)

    with pytest.raises(AssertionError, match="traced"):           # other arguments: another program
        scaled_sum(3, 3.0).compile()
    with pytest.raises(AssertionError, match="traced"):           # made without a recipe: always traced
        SecureProgram("scaled-sum-3", lambda a, b: ((a + b) * 2.0,), first.inputs, first.outputs).compile()
    monkeypatch.setattr(programs, "_SOURCE", ["another version of prana"])
    with pytest.raises(AssertionError, match="traced"):           # other source code: traced again
        scaled_sum(3, 2.0).compile()


def test_no_program_is_kept_when_the_cache_is_off(tmp_path, monkeypatch):
    monkeypatch.setenv("PRANA_COMPILE_CACHE", "off")
    monkeypatch.chdir(tmp_path)
    scaled_sum(2, 2.0).compile()
    _no_tracing(monkeypatch)
    with pytest.raises(AssertionError, match="traced"):
        scaled_sum(2, 2.0).compile()
