"""Released weights in other frameworks' formats -> PyTorch, without TensorFlow: the TensorFlow
file readers (:mod:`.tfformats`), the converter of DCT-Net / White-box TTN releases into style
folders (:mod:`.ttn_releases`), and TFLite graphs run in PyTorch (:mod:`.tflite_graph`, with the
operators in :mod:`.tflite_ops` and MediaPipe's custom ones in :mod:`.mediapipe_ops`).

May import: ``errors``, ``options``, :mod:`portrait_stylize.common`, :mod:`portrait_stylize.imaging`,
:mod:`portrait_stylize.models`.
"""
