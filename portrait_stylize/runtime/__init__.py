"""How a style's networks run on this machine: the device (:mod:`.devices`), the backends
(:mod:`.backends`: PyTorch float32/bf16, ONNX Runtime float32/int8, OpenVINO, and ``auto``; what
the CPU offers them in :mod:`.cpu`, ``auto``'s measured ranking in :mod:`.ranking`, a runner per
backend in :mod:`.runners`, OpenVINO's compiled graphs in :mod:`.openvino_graph`), ONNX export
(:mod:`.onnx_export`), int8 quantization (:mod:`.quantize`), and graph rewrites that make the
exported graph fast (:mod:`.winograd`, :mod:`.onnx_layout`).

May import: ``errors``, ``options``, :mod:`portrait_stylize.common`, :mod:`portrait_stylize.imaging`,
:mod:`portrait_stylize.models`.
"""
