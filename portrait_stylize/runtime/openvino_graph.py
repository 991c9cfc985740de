"""An ONNX graph run by OpenVINO on the CPU, compiled once per input shape (the ``openvino``
backend's engine)."""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import torch

#: Input shapes an OpenVINO graph keeps compiled (each costs memory; a batch of photos of
#: different sizes would otherwise recompile for every one).
OPENVINO_SHAPES = 4


class OpenVINOGraph:
    """An ONNX graph compiled by OpenVINO for the CPU, once per input shape (the first call at a
    new shape compiles; :data:`OPENVINO_SHAPES` shapes are kept), ``threads`` threads (default:
    ``torch.get_num_threads()``). Calls from several threads are safe.

    ``precision`` is OpenVINO's inference-precision hint: ``"f32"`` (set, so that CPUs with bf16
    units do not silently drop to bf16) or ``"bf16"`` (fast where AMX is). An int8 (QDQ) graph
    runs its quantized operations in int8 either way."""

    def __init__(self, onnx: bytes, threads: int | None = None, precision: str = "f32") -> None:
        import openvino

        self._core = openvino.Core()
        self._onnx = onnx
        self._config = {"INFERENCE_NUM_THREADS": threads or torch.get_num_threads(), "NUM_STREAMS": 1,
                        "INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        self._compiled: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def _compiled_for(self, shape: tuple[int, ...]):
        with self._lock:
            if shape not in self._compiled:
                model = self._core.read_model(self._onnx, b"")
                model.reshape(list(shape))
                self._compiled[shape] = self._core.compile_model(model, "CPU", self._config)
                if len(self._compiled) > OPENVINO_SHAPES:
                    self._compiled.popitem(last=False)
            self._compiled.move_to_end(shape)
            return self._compiled[shape]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        request = self._compiled_for(x.shape).create_infer_request()  # one per call: thread-safe
        request.infer({0: x})
        return request.get_output_tensor(0).data.copy()
