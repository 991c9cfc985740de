"""OpenVINO models compiled for the CPU once per input shape, a bounded number kept: the one
mechanism behind the ``openvino*`` style backends and the face detectors run by OpenVINO.

Why per shape: a graph compiled with free heights and widths ran 1.25-1.6x slower per call than
one compiled for the shape, and its output differs in the last bits, so a "free shape first"
policy would make a picture's answer depend on which sizes came before it."""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict
from types import ModuleType
from typing import Any

import numpy as np
import torch

_IMPORTING = threading.Lock()


def import_openvino() -> ModuleType:
    """The ``openvino`` package, imported without its telemetry.

    A plain ``import openvino`` sends a usage event to Google Analytics and writes a client id
    under ``~/intel`` (OpenVINO's telemetry: on unless a consent file or ``CI=true`` says
    otherwise), and on Linux it sends from a child process started by ``multiprocessing``, whose
    default start method from Python 3.14 on (forkserver) runs the top-level code of the user's
    script a second time. So the first import hides the ``openvino_telemetry`` module, and
    OpenVINO falls back to its own stub that sends nothing. Someone who wants the telemetry
    imports ``openvino`` before this package does."""
    with _IMPORTING:
        if "openvino" not in sys.modules and "openvino_telemetry" not in sys.modules:
            sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import fails
            try:
                import openvino
            finally:
                del sys.modules["openvino_telemetry"]
    import openvino

    return openvino


def cpu_config(threads: int | None = None, precision: str = "f32") -> dict[str, Any]:
    """OpenVINO CPU settings: ``threads`` threads (default ``torch.get_num_threads()``), one
    stream, latency first, inference precision ``precision`` (``"f32"`` is set explicitly so that
    CPUs with bf16 units do not silently drop to bf16)."""
    return {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "NUM_STREAMS": 1,
            "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}


def infer(compiled: Any, x: np.ndarray) -> tuple[np.ndarray, ...]:
    """Every output of ``compiled`` on the float32 input ``x``, copied out (one infer request per
    call, so calls from several threads are safe)."""
    request = compiled.create_infer_request()
    request.infer({0: np.ascontiguousarray(x, np.float32)})
    return tuple(request.get_output_tensor(i).data.copy() for i in range(len(compiled.outputs)))


#: Models compiled for inputs of at least this many values (a 1-megapixel picture's) give their
#: intermediate buffers back on :meth:`CompiledPerShape.release`: a large tile's buffers stay
#: held otherwise, beside what the pipeline does after the whole-image pass (a 4K group photo with
#: faces and regions: 2017 MB peak with 1024-px int8 tiles, 1794-1799 MB with them given back).
RELEASE_VALUES = 3 << 20


class CompiledPerShape:
    """``model`` (an ``openvino.Model``, read once) compiled with ``config`` for each input shape it
    is called with; the ``keep`` most recently used shapes stay compiled (each holds its own
    buffers; those of large inputs can be given back: :meth:`release`). Thread-safe."""

    def __init__(self, model: Any, config: dict[str, Any], keep: int) -> None:
        self._core = import_openvino().Core()
        self._model = model
        self._config = config
        self._keep = keep
        self._compiled: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, shape: tuple[int, ...]) -> Any:
        """The compiled model for input ``shape`` (compiled now when it is not kept)."""
        return self._entry(shape)[0]

    def _entry(self, shape: tuple[int, ...]) -> tuple[Any, threading.Lock]:
        with self._lock:
            if shape not in self._compiled:
                model = self._model.clone()
                model.reshape(list(shape))
                self._compiled[shape] = self._core.compile_model(model, "CPU", self._config), threading.Lock()
                if len(self._compiled) > self._keep:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(shape)
            return self._compiled[shape]

    def run(self, x: np.ndarray) -> tuple[np.ndarray, ...]:
        """:func:`infer` with the model compiled for ``x``'s shape. An input of
        :data:`RELEASE_VALUES` or more values runs alone on its compiled model (OpenVINO gives
        buffers back only while no inference runs on it)."""
        compiled, lock = self._entry(tuple(x.shape))
        if x.size < RELEASE_VALUES:
            return infer(compiled, x)
        with lock:
            return infer(compiled, x)

    def release(self) -> None:
        """Give back the intermediate buffers of the models compiled for inputs of
        :data:`RELEASE_VALUES` or more values (the next run at such a shape allocates them again:
        once per picture that cost 8 % of a 4K pass, once per tile it would cost 25 %)."""
        with self._lock:
            large = [entry for shape, entry in self._compiled.items() if np.prod(shape) >= RELEASE_VALUES]
        for compiled, lock in large:
            with lock:
                compiled.release_memory()

    def shapes(self) -> list[tuple[int, ...]]:
        """The shapes kept compiled, least recently used first."""
        with self._lock:
            return list(self._compiled)
