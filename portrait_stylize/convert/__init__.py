"""Released weights in other frameworks' formats -> PyTorch, without TensorFlow: the TensorFlow
file readers (:mod:`.tfformats`), the converter of DCT-Net / White-box TTN releases into style
folders (:mod:`.ttn_releases`), PyTorch checkpoints of published architectures (AnimeGANv2) read
once with ``weights_only=True`` into style folders (:mod:`.checkpoints`), and TFLite flatbuffers
read into graphs that run in PyTorch (:mod:`.tflite_reader`, making
:class:`portrait_stylize.models.tflite_graph.TFLiteGraph`).

May import: ``errors``, ``options``, :mod:`portrait_stylize.common`, :mod:`portrait_stylize.imaging`,
:mod:`portrait_stylize.models`.
"""
