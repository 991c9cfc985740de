"""An ONNX graph run by OpenVINO on the CPU, compiled once per input shape (the ``openvino``
backend's engine)."""

from __future__ import annotations

import numpy as np

from ..common.openvino_compiled import CompiledPerShape, cpu_config, import_openvino

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
        model = import_openvino().Core().read_model(onnx, b"")
        self._compiled = CompiledPerShape(model, cpu_config(threads, precision), OPENVINO_SHAPES)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._compiled.run(x)[0]

    def release(self) -> None:
        """Give back the buffers held for large inputs (:meth:`CompiledPerShape.release`)."""
        self._compiled.release()
