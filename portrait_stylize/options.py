"""The values options take, in one module without heavy imports (no torch, NumPy or MediaPipe),
so the command line parses its arguments and prints ``--help`` at once.

The modules that use each value import it from here: this is their one definition.
"""

from __future__ import annotations

#: How network styles run (``backend=``; ``"auto"`` picks one of these).
BACKENDS = ("torch", "torch-bf16", "onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8")
#: The backends that run a U-Net in int8 (refused for a style too far from float32 in int8).
INT8_BACKENDS = ("onnx-int8", "openvino-int8")
#: Face detectors/parsers (``face_backend=``).
FACE_BACKENDS = ("auto", "mediapipe", "facexlib")
#: Every region name the library knows; each face backend sees a subset (its ``regions``).
REGIONS = ("skin", "brows", "eyes", "nose", "lips", "mouth", "hair", "ears", "neck", "clothes", "background")
#: Colour order a style's weights were trained on.
CHANNEL_ORDERS = ("rgb", "bgr")
#: TTN stride-2 padding and bilinear upsampling conventions (see ``models/ttn.py``).
PADDINGS = ("tf_same", "symmetric")
UPSAMPLINGS = ("tf_legacy", "half_pixel")
#: Images larger than this (pixels per side) run in tiles.
DEFAULT_TILE_SIZE = 512
#: Images with more pixels are refused before decoding (decompression-bomb guard).
DEFAULT_MAX_PIXELS = 50_000_000
#: File suffixes read and written as images.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
