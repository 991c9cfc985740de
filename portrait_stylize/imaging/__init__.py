"""Pictures as arrays and tensors: reading and saving (:mod:`.io`), tensor ops (:mod:`.ops`), how
blurred, noisy and blocky a picture is (:mod:`.quality`), tiling (:mod:`.tiling`), and the
compositing maths (:mod:`.blending`: feathered masks, multi-band blending, histogram matching).

Knows nothing of faces or networks. May import: ``errors``, ``options``, :mod:`portrait_stylize.common`.
"""
