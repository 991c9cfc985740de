"""OpenVINO models compiled for the CPU once per input shape, a bounded number kept: the one
mechanism behind the ``openvino*`` style backends and the face detectors run by OpenVINO.

Why per shape: a graph compiled with free heights and widths ran 1.25-1.6x slower per call than
one compiled for the shape, and its output differs in the last bits, so a "free shape first"
policy would make a picture's answer depend on which sizes came before it."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import torch


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


class CompiledPerShape:
    """``model`` (an ``openvino.Model``, read once) compiled with ``config`` for each input shape it
    is called with; the ``keep`` most recently used shapes stay compiled (each holds its own
    buffers). Thread-safe."""

    def __init__(self, model: Any, config: dict[str, Any], keep: int) -> None:
        import openvino

        self._core = openvino.Core()
        self._model = model
        self._config = config
        self._keep = keep
        self._compiled: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def __call__(self, shape: tuple[int, ...]) -> Any:
        """The compiled model for input ``shape`` (compiled now when it is not kept)."""
        with self._lock:
            if shape not in self._compiled:
                model = self._model.clone()
                model.reshape(list(shape))
                self._compiled[shape] = self._core.compile_model(model, "CPU", self._config)
                if len(self._compiled) > self._keep:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(shape)
            return self._compiled[shape]

    def shapes(self) -> list[tuple[int, ...]]:
        """The shapes kept compiled, least recently used first."""
        with self._lock:
            return list(self._compiled)
