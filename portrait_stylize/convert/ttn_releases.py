"""Convert released TTN weights (DCT-Net, White-box Cartoonization) into portrait-stylize styles.

Readers for the three release formats, none of which needs TensorFlow:

* TFLite flatbuffers (:func:`read_tflite`): float32, fp16 constants behind ``DEQUANTIZE``, int8
  dynamic-range constants with per-channel scales;
* frozen TensorFlow graphs (:func:`read_frozen_graph`), e.g. DCT-Net's ``cartoon_*_h.pb`` /
  ``cartoon_*_bg.pb``;
* TensorFlow checkpoints (:func:`read_checkpoint`), ``PREFIX.index`` + ``PREFIX.data-*``.

Weights are matched by structure. In graphs, the convolutions are taken in execution (data-flow)
order with their strides and kernel shapes; in checkpoints, which hold no graph, layers are ordered
by name inside each variable scope and the scopes are interleaved in the one way that gives the
TTN's sequence of shapes. Either way the result must have exactly the kinds and shapes of
:meth:`TTN.conv_layers`; anything missing, extra or of the wrong shape stops with an error naming
the layer. Conventions found in graphs (guided-filter radius and eps, LeakyReLU slope, resize
mode) are carried into ``config.json``; command-line values override them.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..common.files import sha256_file
from ..errors import ConversionError
from ..models.serialization import save_style_replacing
from ..models.ttn import TTN
from ..models.ttn_style import TTNStyle
from . import tfformats as tff

#: Side of a face paste mask stored with a converted style (the aligned crop's side).
FACE_MASK_SIZE = 288


@dataclass
class ConvLayer:
    """One convolution read from a release: ``weight`` OHWI float32, ``bias`` (O,)."""

    weight: np.ndarray
    bias: np.ndarray
    stride: int | None = None
    name: str = ""


@dataclass
class TTNWeights:
    """What a reader found: convolutions in network order plus the conventions it could detect.

    Attributes:
        convs: the convolutions, in forward order.
        conventions: :class:`TTN` keyword arguments detected in the graph (``gf_radius``,
            ``gf_eps``, ``negative_slope``, ``upsample``, ``padding``); empty for checkpoints.
    """

    convs: list[ConvLayer]
    conventions: dict[str, Any] = field(default_factory=dict)


def ttn_from_weights(weights: TTNWeights, source: str, **ttn_kwargs: Any) -> TTN:
    """Build a :class:`TTN` (detected conventions, overridden by ``ttn_kwargs``) and load ``weights``.

    The structure is checked layer by layer: count, kernel shape and stride of every convolution.
    """
    net = TTN(**{**weights.conventions, **ttn_kwargs}).eval()
    layers = net.conv_layers()
    for i, (name, conv) in enumerate(layers):
        expected = tuple(conv.weight.shape)
        if i >= len(weights.convs):
            raise ConversionError(f"{source}: missing layer {i} ({name}, expected weight {expected} OIHW); "
                                  f"the graph has only {len(weights.convs)} convolutions")
        layer = weights.convs[i]
        w, b = layer.weight, layer.bias
        got = (w.shape[0], w.shape[3], w.shape[1], w.shape[2]) if w.ndim == 4 else tuple(w.shape)
        label = f"layer {i} ({name}{', ' + layer.name if layer.name else ''})"
        if got != expected or b.shape != (expected[0],):
            raise ConversionError(f"{source}: {label} has weight {got} OIHW and bias {b.shape}; "
                                  f"a TTN needs {expected} and ({expected[0]},)")
        if layer.stride is not None and layer.stride != conv.stride[0]:
            raise ConversionError(f"{source}: {label} has stride {layer.stride}; a TTN needs {conv.stride[0]}")
        conv.weight.data = torch.from_numpy(np.ascontiguousarray(w.transpose(0, 3, 1, 2), dtype=np.float32))
        conv.bias.data = torch.from_numpy(np.ascontiguousarray(b, dtype=np.float32))
    if len(weights.convs) > len(layers):
        extra = weights.convs[len(layers)]
        raise ConversionError(f"{source}: extra convolution {extra.name or len(layers)} after the TTN's {len(layers)} "
                              f"layers (found {len(weights.convs)}); this is not a DCT-Net/White-box TTN")
    return net


def _conventions(source: Path, slopes: set[float], resize: set[tuple[bool, bool]], radii: set[int],
                 eps: set[float]) -> dict[str, Any]:
    """TTN keyword arguments from what a graph contains; inconsistent values are an error."""
    found: dict[str, Any] = {"padding": "tf_same"}  # TensorFlow graphs: 'SAME' convolutions
    for key, values in (("negative_slope", slopes), ("gf_radius", radii), ("gf_eps", eps)):
        if len(values) > 1:
            raise ConversionError(f"{source}: different {key} values in one graph: {sorted(values)}")
        if values:
            found[key] = float(f"{values.pop():.7g}") if key != "gf_radius" else values.pop()  # drop float32 noise
    if (True, False) in resize or (True, True) in resize:
        raise ConversionError(f"{source}: bilinear resize with align_corners=True is not a TTN convention")
    if len(resize) > 1:
        raise ConversionError(f"{source}: the graph mixes resize modes")
    if resize:
        found["upsample"] = "half_pixel" if resize.pop()[1] else "tf_legacy"
    if "gf_radius" not in found and "gf_eps" not in found:
        found["gf_radius"] = 0  # no guided filter in the graph: the U-Net output is the result
    return found


# --- TFLite -----------------------------------------------------------------------------------

def read_tflite(path: str | Path) -> TTNWeights:
    """Read TTN weights from a TFLite file (float32, fp16 + DEQUANTIZE, or int8 dynamic range)."""
    import tflite

    path = Path(path)
    try:
        model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
        graph = model.Subgraphs(0) if model.SubgraphsLength() else None
    except Exception as exc:  # flatbuffers raises assorted errors on garbage
        raise ConversionError(f"{path}: not a TFLite model ({exc})") from None
    if graph is None:
        raise ConversionError(f"{path}: not a TFLite model (no subgraph)")
    ops_enum = tflite.BuiltinOperator
    dtypes = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
              tflite.TensorType.INT8: np.int8}

    def kind(op) -> int:
        code = model.OperatorCodes(op.OpcodeIndex())
        return max(code.BuiltinCode(), code.DeprecatedBuiltinCode())

    def options(op, cls):
        table, result = op.BuiltinOptions(), cls()
        result.Init(table.Bytes, table.Pos)
        return result

    ops = [graph.Operators(i) for i in range(graph.OperatorsLength())]
    dequantized = {op.Outputs(0): op.Inputs(0) for op in ops if kind(op) == ops_enum.DEQUANTIZE}
    producers = {op.Outputs(0): kind(op) for op in ops}

    def constant(index: int) -> np.ndarray:
        tensor = graph.Tensors(dequantized.get(index, index))
        data = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if tensor.Type() not in dtypes or isinstance(data, int):
            raise ConversionError(f"{path}: tensor {tensor.Name().decode()!r} is not a float/int8 constant")
        shape = tuple(tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
        arr = np.frombuffer(data.tobytes(), dtype=dtypes[tensor.Type()]).reshape(shape).astype(np.float32)
        quant = tensor.Quantization()
        if tensor.Type() == tflite.TensorType.INT8 and quant is not None and quant.ScaleLength():
            scale = quant.ScaleAsNumpy().astype(np.float32)
            if arr.ndim and scale.size > 1:
                scale = scale.reshape([-1 if d == quant.QuantizedDimension() else 1 for d in range(arr.ndim)])
            arr = arr * scale
        return arr

    def is_scalar_constant(index: int) -> bool:
        tensor = graph.Tensors(dequantized.get(index, index))
        return tensor.ShapeLength() == 0 and model.Buffers(tensor.Buffer()).DataLength() > 0

    convs, slopes, resize, radii, eps = [], set(), set(), set(), set()
    for op in ops:
        k = kind(op)
        if k == ops_enum.CONV_2D:
            stride = options(op, tflite.Conv2DOptions).StrideH()
            name = graph.Tensors(op.Inputs(1)).Name().decode()
            convs.append(ConvLayer(constant(op.Inputs(1)), constant(op.Inputs(2)), stride, name))
        elif k == ops_enum.LEAKY_RELU:
            slopes.add(float(options(op, tflite.LeakyReluOptions).Alpha()))
        elif k == ops_enum.RESIZE_BILINEAR:
            opts = options(op, tflite.ResizeBilinearOptions)
            resize.add((bool(opts.AlignCorners()), bool(opts.HalfPixelCenters())))
        elif k == ops_enum.DEPTHWISE_CONV_2D:
            radii.add((graph.Tensors(dequantized.get(op.Inputs(1), op.Inputs(1))).Shape(1) - 1) // 2)
        elif k == ops_enum.ADD and op.InputsLength() == 2:
            # The guided filter's "var + eps": a scalar constant added to a difference.
            a, b = op.Inputs(0), op.Inputs(1)
            for const, other in ((b, a), (a, b)):
                if is_scalar_constant(const) and producers.get(other) == ops_enum.SUB:
                    eps.add(float(constant(const)))
    return TTNWeights(convs, _conventions(path, slopes, resize, radii, eps))


# --- frozen TensorFlow graphs -----------------------------------------------------------------

_PASS_THROUGH = ("Identity", "ReadVariableOp", "Snapshot")


def read_frozen_graph(path: str | Path) -> TTNWeights:
    """Read TTN weights from a frozen TensorFlow ``GraphDef`` (``.pb``), without TensorFlow."""
    path = Path(path)
    try:
        nodes = tff.read_graph_def(path)
        order = tff.topological_order(nodes)
    except (tff.FormatError, UnicodeDecodeError) as exc:
        raise ConversionError(f"{path}: not a readable frozen TensorFlow graph ({exc})") from None
    consumers: dict[str, list[tff.Node]] = {}
    for node in order:
        for name, _ in node.inputs:
            consumers.setdefault(name, []).append(node)

    def source_of(name: str) -> tff.Node:
        node = nodes[name]
        while node.op in _PASS_THROUGH and node.inputs:
            node = nodes[node.inputs[0][0]]
        return node

    def constant(name: str, what: str) -> np.ndarray:
        node = source_of(name)
        if node.op != "Const":
            raise ConversionError(f"{path}: {what} comes from a {node.op} node ({node.name!r}), not a constant; "
                                  "is the graph frozen?")
        return node.attr_tensor("value").astype(np.float32)

    convs, slopes, resize, radii, eps = [], set(), set(), set(), set()
    for node in order:
        if node.op == "Conv2D":
            if node.attr_str("data_format") not in ("", "NHWC") or node.attr_str("padding") != "SAME":
                raise ConversionError(f"{path}: convolution {node.name!r} is not NHWC with SAME padding")
            kernel = constant(node.inputs[1][0], f"the kernel of {node.name!r}")  # HWIO
            bias_add = [c for c in consumers.get(node.name, []) if c.op in ("BiasAdd", "Add", "AddV2")]
            if len(bias_add) != 1:
                raise ConversionError(f"{path}: convolution {node.name!r} is not followed by one bias add")
            bias_input = next(n for n, _ in bias_add[0].inputs if n != node.name)
            bias = constant(bias_input, f"the bias of {node.name!r}")
            strides = node.attr_int_list("strides") or [1, 1, 1, 1]
            convs.append(ConvLayer(kernel.transpose(3, 0, 1, 2), bias, strides[1], node.name))
        elif node.op == "LeakyRelu":
            slopes.add(float(node.attr_float("alpha") or 0.2))
        elif node.op in ("ResizeBilinear",):
            resize.add((node.attr_bool("align_corners"), node.attr_bool("half_pixel_centers")))
        elif node.op == "DepthwiseConv2dNative":
            radii.add((constant(node.inputs[1][0], f"the kernel of {node.name!r}").shape[0] - 1) // 2)
        elif node.op in ("Add", "AddV2"):
            ins = [source_of(n) for n, _ in node.inputs]
            for const, other in ((ins[1], ins[0]), (ins[0], ins[1])):
                if const.op == "Const" and other.op == "Sub" and const.attr_tensor("value").size == 1:
                    eps.add(float(const.attr_tensor("value").reshape(())))
    return TTNWeights(convs, _conventions(path, slopes, resize, radii, eps))


# --- TensorFlow checkpoints -------------------------------------------------------------------

_KERNEL_NAMES = ("weights", "kernel")
_BIAS_NAMES = ("biases", "bias")


def _natural_key(text: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _expected_shapes(channels: int, num_blocks: int) -> list[tuple[tuple[int, ...], int]]:
    return [(tuple(c.weight.shape), c.stride[0]) for _, c in TTN(channels, num_blocks).conv_layers()]


def _interleavings(top: list[ConvLayer], groups: list[list[ConvLayer]], expected: list[tuple[int, ...]],
                   limit: int = 2) -> list[list[ConvLayer]]:
    """Orders that keep ``top`` and each group in order, keep groups contiguous and in order, and
    give the shapes ``expected`` (OIHW); at most ``limit`` of them."""
    found: list[list[ConvLayer]] = []

    def fits(layers: list[ConvLayer], at: int) -> bool:
        return all(at + i < len(expected) and _oihw(layer) == expected[at + i] for i, layer in enumerate(layers))

    def search(i: int, j: int, seq: list[ConvLayer]) -> None:
        if len(found) >= limit:
            return
        if i == len(top) and j == len(groups):
            if len(seq) == len(expected):
                found.append(seq)
            return
        if i < len(top) and fits([top[i]], len(seq)):
            search(i + 1, j, seq + [top[i]])
        if j < len(groups) and fits(groups[j], len(seq)):
            search(i, j + 1, seq + groups[j])

    search(0, 0, [])
    return found


def _oihw(layer: ConvLayer) -> tuple[int, ...]:
    w = layer.weight
    return (w.shape[0], w.shape[3], w.shape[1], w.shape[2])


def read_checkpoint(path: str | Path) -> TTNWeights:
    """Read TTN weights from a TensorFlow checkpoint (``PREFIX``, ``PREFIX.index`` or a data shard).

    Convolutions are ``SCOPE/.../{weights,kernel}`` 4-D variables with a matching ``biases``/``bias``;
    optimizer slots (``.../Adam``) and other networks (a discriminator) are ignored: the one
    top-level scope whose layers form a TTN is used.
    """
    path = Path(path)
    try:
        tensors = tff.read_checkpoint(path)
    except tff.FormatError as exc:
        raise ConversionError(str(exc)) from None
    layers: dict[str, ConvLayer] = {}
    for name, kernel in tensors.items():
        scope, _, leaf = name.rpartition("/")
        if leaf not in _KERNEL_NAMES or kernel.ndim != 4:
            continue
        bias = next((tensors[f"{scope}/{b}"] for b in _BIAS_NAMES if f"{scope}/{b}" in tensors), None)
        if bias is None:
            raise ConversionError(f"{path}: convolution {scope!r} has no bias variable")
        layers[scope] = ConvLayer(kernel.astype(np.float32).transpose(3, 0, 1, 2), bias.astype(np.float32), None, scope)
    scopes: dict[str, list[str]] = {}
    for scope in layers:
        scopes.setdefault(scope.split("/")[0], []).append(scope)
    reports = []
    for top_scope, members in sorted(scopes.items()):
        groups: dict[str, list[ConvLayer]] = {}
        for scope in sorted(members, key=_natural_key):
            groups.setdefault(scope.rpartition("/")[0], []).append(layers[scope])
        parent = min(groups, key=len)
        first = groups[parent][0]
        channels, num_blocks = first.weight.shape[0], (len(members) - 10) // 2
        expected = [shape for shape, _ in _expected_shapes(channels, max(num_blocks, 0))]
        sub = [groups[g] for g in sorted(groups, key=_natural_key) if g != parent]
        orders = _interleavings(groups[parent], sub, expected)
        if len(orders) == 1:
            strides = [stride for _, stride in _expected_shapes(channels, num_blocks)]
            convs = [ConvLayer(c.weight, c.bias, s, c.name) for c, s in zip(orders[0], strides)]
            return TTNWeights(convs, {"channels": channels, "num_blocks": num_blocks})
        reports.append(f"{top_scope!r} ({len(members)} convolutions: "
                       f"{'ambiguous order' if orders else 'no order gives the TTN shapes'})")
    raise ConversionError(f"{path}: no variable scope holds a DCT-Net/White-box TTN; scopes with convolutions: "
                          f"{', '.join(reports) or 'none'}")


# --- conversion ---------------------------------------------------------------------------------

READERS = {".tflite": read_tflite, ".pb": read_frozen_graph}


def read_weights(path: str | Path) -> TTNWeights:
    """Read a ``.tflite``, a frozen ``.pb`` graph, or a checkpoint (``.index``/``.data-*``/prefix)."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is not None:
        if not path.is_file():
            raise ConversionError(f"{path}: file not found")
        return reader(path)
    prefix = tff.checkpoint_prefix(path)
    if prefix.with_name(prefix.name + ".index").is_file():
        return read_checkpoint(prefix)
    raise ConversionError(f"{path}: not a .tflite, .pb or TensorFlow checkpoint (PREFIX.index + PREFIX.data-*)")


def _source_files(path: Path) -> list[Path]:
    """The files a source consists of (a checkpoint is its index plus data shards)."""
    if path.suffix.lower() in READERS:
        return [path]
    prefix = tff.checkpoint_prefix(path)
    return sorted(prefix.parent.glob(prefix.name + ".index")) + sorted(prefix.parent.glob(prefix.name + ".data-*"))


def assign_parts(sources: list[str | Path]) -> dict[str, Path]:
    """``{"head": ..., "bg": ...}`` from one or two sources.

    With two, a file whose name ends in ``bg`` (``cartoon_anime_bg.pb``, ``bg.pb``, ``model-bg``) is
    the background network and the other one the head; otherwise the first is the head.
    """
    paths = [Path(s) for s in sources]
    if not 1 <= len(paths) <= 2:
        raise ConversionError(f"give one source (head only) or two (head and background), got {len(paths)}")
    if len(paths) == 2 and _is_bg(paths[0]) and not _is_bg(paths[1]):
        paths.reverse()
    return dict(zip(("head", "bg"), paths))


def _is_bg(path: Path) -> bool:
    return re.search(r"(^|[_.-])bg$", tff.checkpoint_prefix(path).name.removesuffix(path.suffix)) is not None


def convert(sources: list[str | Path], output: str | Path, *, name: str = "", description: str = "",
            licence: str = "other", source: str = "", channel_order: str = "bgr", overwrite: bool = False,
            command: str | None = None, face_mask: np.ndarray | None = None, image_pad_multiple: int = 0,
            image_pad_value: float = 1.0, **ttn_overrides: Any) -> TTNStyle:
    """Convert one or two released networks into a style folder at ``output``.

    Args:
        sources: head network, optionally followed by the background network (any of the
            readable formats, see :func:`read_weights`; see :func:`assign_parts` for the order).
        output: the style folder to write (``config.json``, ``model.safetensors``, ``README.md``).
        name, description, licence, source: provenance for ``config.json`` and the model card.
        channel_order: what the weights were trained on (official DCT-Net/White-box: ``"bgr"``).
        overwrite: replace an existing non-empty ``output`` (atomically).
        command: the command line to record in the model card (default: a Python call).
        face_mask: ``(H, W)`` grey levels in [0, 255], the release's paste mask for the face pass
            (DCT-Net's ``alpha.jpg``), stored with the weights at 288².
        image_pad_multiple, image_pad_value: how the release pads whole images (DCT-Net: 16,
            white), see :class:`~portrait_stylize.models.ttn_style.TTNStyle`.
        **ttn_overrides: :class:`TTN` arguments that win over detected conventions (``gf_eps``,
            ``gf_radius``, ``upsample``, ``padding``, ``negative_slope``).

    Returns:
        The converted :class:`~portrait_stylize.models.ttn_style.TTNStyle` (also written to ``output``).
    """
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())) and not overwrite:
        raise ConversionError(f"{output} already exists; choose another folder or pass --overwrite")
    parts = assign_parts(sources)
    nets, found = {}, {}
    for part, path in parts.items():
        weights = read_weights(path)
        nets[part] = ttn_from_weights(weights, str(path), **ttn_overrides)
        found[part] = weights.conventions
    model = TTNStyle(head=nets["head"].config, bg=nets["bg"].config if "bg" in nets else None,
                     channel_order=channel_order, name=name, description=description, licence=licence,
                     source=source, image_pad_multiple=image_pad_multiple, image_pad_value=image_pad_value,
                     face_mask_size=FACE_MASK_SIZE if face_mask is not None else 0)
    for part, net in nets.items():
        getattr(model, part).load_state_dict(net.state_dict())
    if face_mask is not None:
        model.set_face_mask(face_mask)
    inputs = [(part, f) for part, p in parts.items() for f in _source_files(p)]
    lines = ["", "## Conversion", "",
             "Converted with `portrait-stylize convert`; the TTN structure was checked layer by layer.", "",
             "```bash", command or f"# convert({[str(p) for p in parts.values()]!r}, {str(output)!r})", "```", "",
             "| network | input file | sha256 |", "|---|---|---|"]
    lines += [f"| {part} | `{f.name}` | `{sha256_file(f)}` |" for part, f in inputs]
    lines += ["", "Conventions detected in the source graphs (before command-line overrides): "
              + "; ".join(f"{part}: {found[part] or 'none (checkpoint)'}" for part in nets)]
    save_style_replacing(model, output, "\n".join(lines) + "\n")
    return model


def command_line(argv: list[str]) -> str:
    """``argv`` quoted for a shell, as recorded in model cards."""
    return shlex.join(["portrait-stylize", *argv])
