"""Released weights in other frameworks' formats -> style folders, without TensorFlow: the
TensorFlow/TFLite file readers (:mod:`.tfformats`) and the converter of DCT-Net / White-box TTN
releases (:mod:`.ttn_releases`).

May import: ``errors``, ``options``, :mod:`portrait_stylize.common`, :mod:`portrait_stylize.imaging`,
:mod:`portrait_stylize.models`.
"""
