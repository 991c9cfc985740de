"""TFLiteGraph runs MediaPipe's TFLite models in PyTorch as the TFLite runtimes do.

The models are the ones in the ``mediapipe`` wheel (those tests skip without it). Four of them run in
ai-edge-litert's interpreter, whose XNNPACK delegate also implements ``Convolution2DTransposeBias``;
the attention face mesh needs MediaPipe's other custom operators, so it runs in MediaPipe's own
TFLite inference (a one-model ``CalculatorGraph`` with MediaPipe's op resolver). The custom operators
are also checked one by one against float64 re-derivations of their documented maths, and the
padding, resizing and densifying rules against small hand-made cases.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from portrait_stylize.convert import tflite_reader
from portrait_stylize.convert.tflite_reader import densify, load_tflite
from portrait_stylize.errors import ConversionError, InvalidArgumentError
from portrait_stylize.models import mediapipe_ops, tflite_ops
from portrait_stylize.models.tflite_graph import KERNELS, TFLiteGraph

from helpers import psnr

MEDIAPIPE = importlib.util.find_spec("mediapipe")
MODULES = Path(MEDIAPIPE.origin).parent / "modules" if MEDIAPIPE else Path("/nonexistent")
needs_mediapipe = pytest.mark.skipif(MEDIAPIPE is None, reason="mediapipe is not installed (its wheel has the models)")

#: Model (under mediapipe/modules) -> the range of its input (MediaPipe's preprocessing).
MODELS = {
    "face_detection/face_detection_short_range.tflite": (-1.0, 1.0),
    "face_detection/face_detection_full_range_sparse.tflite": (-1.0, 1.0),
    "face_landmark/face_landmark.tflite": (0.0, 1.0),
    "face_landmark/face_landmark_with_attention.tflite": (0.0, 1.0),
    "selfie_segmentation/selfie_segmentation.tflite": (0.0, 1.0),
    "selfie_segmentation/selfie_segmentation_landscape.tflite": (0.0, 1.0),
    # Beyond issue 27's five: the landscape selfie model has MEAN, the iris model plain float32 constants
    # (no DEQUANTIZE) and STRIDED_SLICEs of channels.
    "iris_landmark/iris_landmark.tflite": (-1.0, 1.0),
}
ATTENTION = "face_landmark/face_landmark_with_attention.tflite"
MIN_PSNR = 60.0

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@functools.cache
def _graph(model: str) -> TFLiteGraph:
    return load_tflite(MODULES / model).eval()


def _input(model: str, batch: int = 1, seed: int = 0) -> np.ndarray:
    low, high = MODELS[model]
    shape = _graph(model).graph_spec()["tensors"][str(_graph(model).graph_spec()["inputs"][0])]["shape"]
    return np.random.default_rng(seed).uniform(low, high, (batch, *shape[1:])).astype(np.float32)


def _run(net: TFLiteGraph, x: np.ndarray) -> dict[str, np.ndarray]:
    with torch.inference_mode():
        return {name: out.numpy() for name, out in zip(net.output_names, net(torch.from_numpy(x)))}


def _peak(reference: np.ndarray) -> float:
    """The output's range; for a one-value output (a face flag) its magnitude."""
    return float(np.ptp(reference)) if reference.size > 1 else float(np.abs(reference).max())


# --- whole models against the runtimes ------------------------------------------------------------


@needs_mediapipe
@pytest.mark.parametrize("model", [m for m in MODELS if m != ATTENTION])
def test_matches_the_tflite_interpreter(model):
    interpreter_module = pytest.importorskip("ai_edge_litert.interpreter")
    interpreter = interpreter_module.Interpreter(model_path=str(MODULES / model))
    interpreter.allocate_tensors()
    x = _input(model)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    expected = {o["name"]: interpreter.get_tensor(o["index"]) for o in interpreter.get_output_details()}
    ours = _run(_graph(model), x)
    assert set(ours) == set(expected)
    for name, reference in expected.items():
        assert ours[name].shape == reference.shape
        assert psnr(ours[name], reference, _peak(reference)) >= MIN_PSNR, name


def _mediapipe_inference(model: Path, image: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    """``(input tensor, outputs)`` of MediaPipe's CPU TFLite inference with its custom operators on an
    RGB uint8 image of the model's input size, converted to [0, 1] floats by MediaPipe itself."""
    from google.protobuf import text_format
    from mediapipe.framework import calculator_pb2
    from mediapipe.python import packet_creator, packet_getter
    from mediapipe.python._framework_bindings import calculator_graph, image_frame

    n = len(_graph(ATTENTION).output_names)
    height, width = image.shape[:2]
    outputs = " ".join(f'output_stream: "o{i}"' for i in range(n))
    ranges = " ".join(f"ranges {{ begin: {i} end: {i + 1} }}" for i in range(n))
    floats = "\n".join(f'node {{ calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:o{i}" '
                       f'output_stream: "FLOATS:f{i}" }}' for i in range(n))
    config = text_format.Parse(f"""
        input_stream: "image"
        node {{ calculator: "ImageToTensorCalculator" input_stream: "IMAGE:image" output_stream: "TENSORS:input"
          options {{ [mediapipe.ImageToTensorCalculatorOptions.ext] {{ output_tensor_width: {width}
            output_tensor_height: {height} output_tensor_float_range {{ min: 0 max: 1 }} }} }} }}
        node {{ calculator: "TensorsToFloatsCalculator" input_stream: "TENSORS:input" output_stream: "FLOATS:x" }}
        node {{ calculator: "TfLiteCustomOpResolverCalculator" output_side_packet: "OP_RESOLVER:op_resolver" }}
        node {{ calculator: "InferenceCalculator" input_stream: "TENSORS:input" output_stream: "TENSORS:outputs"
          input_side_packet: "OP_RESOLVER:op_resolver"
          options {{ [mediapipe.InferenceCalculatorOptions.ext] {{ model_path: "{model}"
            delegate {{ tflite {{}} }} }} }} }}
        node {{ calculator: "SplitTensorVectorCalculator" input_stream: "outputs" {outputs}
          options {{ [mediapipe.SplitVectorCalculatorOptions.ext] {{ {ranges} }} }} }}
        {floats}
        """, calculator_pb2.CalculatorGraphConfig())
    graph = calculator_graph.CalculatorGraph(graph_config=config)
    found: dict[str, np.ndarray] = {}
    for stream in ["x", *(f"f{i}" for i in range(n))]:
        graph.observe_output_stream(stream, lambda name, packet: found.__setitem__(
            name, np.array(packet_getter.get_float_list(packet), np.float32)))
    graph.start_run()
    frame = packet_creator.create_image_frame(image_format=image_frame.ImageFormat.SRGB, data=image)
    graph.add_packet_to_input_stream("image", frame.at(0))
    graph.close()
    return found["x"].reshape(1, height, width, 3), [found[f"f{i}"] for i in range(n)]


@needs_mediapipe
def test_attention_mesh_matches_mediapipe_inference_with_its_custom_operators():
    """Landmarks2TransformMatrix, TransformTensorBilinear and TransformLandmarks in their model."""
    net = _graph(ATTENTION)
    image = np.random.default_rng(0).integers(0, 256, (192, 192, 3), dtype=np.uint8)
    x, expected = _mediapipe_inference(MODULES / ATTENTION, image)
    np.testing.assert_allclose(x, image[None] / 255.0, atol=1e-6)
    ours = _run(net, x)
    assert len(expected) == len(ours) == 7
    for (name, out), reference in zip(ours.items(), expected):
        assert out.size == reference.size
        assert psnr(out.ravel(), reference, _peak(reference)) >= MIN_PSNR, name


@needs_mediapipe
@pytest.mark.parametrize("model", MODELS)
def test_a_batch_gives_the_single_results(model):
    net, pair = _graph(model), _input(model, batch=2, seed=1)
    both = _run(net, pair)
    for i in range(2):
        for name, single in _run(net, pair[i: i + 1]).items():
            np.testing.assert_allclose(both[name][i: i + 1], single, rtol=0, atol=1e-4 * max(_peak(single), 1e-3))


@needs_mediapipe
@pytest.mark.parametrize("model", [ATTENTION, "face_detection/face_detection_full_range_sparse.tflite",
                                   "selfie_segmentation/selfie_segmentation.tflite"])
def test_spec_and_weights_rebuild_the_module_without_the_file(model, tmp_path):
    """JSON + safetensors, as a later step stores a converted model: identical outputs."""
    from safetensors.torch import load_file, save_file

    net = _graph(model)
    (tmp_path / "graph.json").write_text(json.dumps(net.graph_spec()))
    save_file(net.state_dict(), tmp_path / "weights.safetensors")
    rebuilt = TFLiteGraph.from_spec(json.loads((tmp_path / "graph.json").read_text()),
                                    load_file(tmp_path / "weights.safetensors")).eval()
    assert rebuilt.graph_spec() == net.graph_spec()
    x = _input(model, seed=2)
    for name, out in _run(net, x).items():
        assert np.array_equal(_run(rebuilt, x)[name], out), name


@needs_mediapipe
def test_unsupported_operators_are_refused_by_name(monkeypatch):
    with pytest.raises(ConversionError, match=r"hand_landmark_lite\.tflite: the TFLite operator FULLY_CONNECTED"):
        load_tflite(MODULES / "hand_landmark" / "hand_landmark_lite.tflite")
    monkeypatch.setitem(tflite_reader.READERS, "TransformLandmarks", tflite_reader.OpReading(versions=(1,)))
    with pytest.raises(ConversionError, match=r"\(TransformLandmarks\): version 2 is not supported"):
        load_tflite(MODULES / ATTENTION)
    monkeypatch.delitem(tflite_reader.READERS, "PRELU")
    with pytest.raises(ConversionError, match=r"face_landmark\.tflite: the TFLite operator PRELU"):
        load_tflite(MODULES / "face_landmark" / "face_landmark.tflite")


@needs_mediapipe
def test_wrong_input_shape_is_refused():
    with pytest.raises(InvalidArgumentError, match=r"shape \(B, 128, 128, 3\)"):
        _graph("face_detection/face_detection_short_range.tflite")(torch.zeros(1, 192, 192, 3))


def test_a_file_that_is_not_tflite_is_refused(tmp_path):
    path = tmp_path / "model.tflite"
    path.write_bytes(b"not a flatbuffer")
    with pytest.raises(ConversionError, match="model.tflite"):
        load_tflite(path)


# --- DENSIFY --------------------------------------------------------------------------------------


def test_densify_csr():
    dense = np.array([[0, 5, 0, 0], [0, 0, 0, 0], [7, 0, 8, 9]], np.float16)
    metadata = [{"format": "DENSE", "dense_size": 3},
                {"format": "SPARSE_CSR", "segments": [0, 1, 1, 4], "indices": [1, 0, 2, 3]}]
    values = np.array([5, 7, 8, 9], np.float16)
    out = densify(values, (3, 4), [0, 1], [], metadata)
    assert out.dtype == np.float16 and np.array_equal(out, dense)
    # Column-major traversal of the same matrix: columns are the outer level.
    metadata = [{"format": "DENSE", "dense_size": 4},
                {"format": "SPARSE_CSR", "segments": [0, 1, 2, 3, 4], "indices": [2, 0, 2, 2]}]
    assert np.array_equal(densify(np.array([7, 5, 8, 9], np.float16), (3, 4), [1, 0], [], metadata), dense)


def test_densify_block_sparse():
    """4×4 in 2×2 blocks; only block (0, 1) and block (1, 0) are stored."""
    dense = np.zeros((4, 4), np.float32)
    dense[0:2, 2:4] = [[1, 2], [3, 4]]
    dense[2:4, 0:2] = [[5, 6], [7, 8]]
    metadata = [{"format": "DENSE", "dense_size": 2},
                {"format": "SPARSE_CSR", "segments": [0, 1, 2], "indices": [1, 0]},
                {"format": "DENSE", "dense_size": 2}, {"format": "DENSE", "dense_size": 2}]
    out = densify(np.arange(1, 9, dtype=np.float32), (4, 4), [0, 1, 2, 3], [0, 1], metadata)
    assert np.array_equal(out, dense)


def test_densify_refuses_a_value_count_that_does_not_fit():
    metadata = [{"format": "DENSE", "dense_size": 2},
                {"format": "SPARSE_CSR", "segments": [0, 1, 2], "indices": [0, 1]}]
    with pytest.raises(ValueError, match="address 2 values"):
        densify(np.ones(3, np.float32), (2, 2), [0, 1], [], metadata)


# --- TFLite's padding and resizing rules ----------------------------------------------------------


def _pool_reference(x: np.ndarray, kernel, stride, reduce) -> np.ndarray:
    """TFLite's SAME pooling in float64 loops: a window covers only real pixels."""
    _, h, w, c = x.shape
    (top, _), (left, _) = (tflite_ops.same_padding(h, kernel[0], stride[0]),
                           tflite_ops.same_padding(w, kernel[1], stride[1]))
    out_h, out_w = -(-h // stride[0]), -(-w // stride[1])
    out = np.zeros((1, out_h, out_w, c))
    for i in range(out_h):
        for j in range(out_w):
            y0, x0 = i * stride[0] - top, j * stride[1] - left
            window = x[0, max(y0, 0): y0 + kernel[0], max(x0, 0): x0 + kernel[1]]
            out[0, i, j] = reduce(window.reshape(-1, c), axis=0)
    return out


@pytest.mark.parametrize("kind,reduce", [("MAX_POOL_2D", np.max), ("AVERAGE_POOL_2D", np.mean)])
def test_same_pooling_with_asymmetric_padding(kind, reduce):
    x = np.random.default_rng(3).normal(size=(1, 6, 7, 2)).astype(np.float32) - 2.0  # negatives: -inf/0 padding
    options = {"padding": "SAME", "stride": [2, 3], "filter": [3, 3], "activation": "NONE"}
    assert tflite_ops.same_padding(6, 3, 2) == (0, 1) and tflite_ops.same_padding(7, 3, 3) == (1, 1)
    ours = KERNELS[kind]([torch.from_numpy(x)], options).numpy()
    np.testing.assert_allclose(ours, _pool_reference(x.astype(np.float64), [3, 3], [2, 3], reduce), atol=1e-6)


def test_resize_bilinear_coordinate_conventions():
    x = torch.tensor([0.0, 1.0]).reshape(1, 1, 2, 1)

    def resize(align_corners, half_pixel_centers):
        options = {"size": [1, 4], "align_corners": align_corners, "half_pixel_centers": half_pixel_centers}
        return tflite_ops.resize_bilinear([x], options).flatten().tolist()

    assert resize(False, False) == [0.0, 0.5, 1.0, 1.0]  # TF 1 legacy: source = i * in / out
    assert resize(True, False) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])
    assert resize(False, True) == [0.0, 0.25, 0.75, 1.0]


# --- MediaPipe's custom operators against float64 re-derivations of their maths -------------------


def _rotation(angle: float) -> np.ndarray:
    m = np.eye(4)
    m[:2, :2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    return m


def _shift(x: float, y: float) -> np.ndarray:
    m = np.eye(4)
    m[:2, 3] = x, y
    return m


def _l2tm_reference(landmarks: np.ndarray, o: dict) -> np.ndarray:
    left, right = landmarks[o["left_rotation_idx"], :2], landmarks[o["right_rotation_idx"], :2]
    r = o["target_rotation_radians"] - np.arctan2(*(right - left)[::-1])
    rotated = landmarks[o["subset_idxs"], :2] @ _rotation(r)[:2, :2].T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    centre = _rotation(-r)[:2, :2] @ ((low + high) / 2)
    width, height = o["output_width"], o["output_height"]
    scale = np.diag([o["scale_x"] * (high - low)[0] / width, o["scale_y"] * (high - low)[1] / height, 1, 1])
    return _shift(*centre) @ _rotation(-r) @ scale @ _shift(-width / 2, -height / 2)


def test_landmarks_to_transform_matrix():
    rng = np.random.default_rng(4)
    landmarks = rng.uniform(0, 48, (2, 30, 3))
    options = {"subset_idxs": [3, 7, 8, 12, 20, 21, 29], "left_rotation_idx": 3, "right_rotation_idx": 12,
               "target_rotation_radians": 0.3, "output_height": 16, "output_width": 12, "scale_x": 1.5, "scale_y": 1.25}
    ours = mediapipe_ops.landmarks_to_transform_matrix([torch.from_numpy(landmarks).float()], options).numpy()
    assert ours.shape == (2, 4, 4)
    for b in range(2):
        np.testing.assert_allclose(ours[b], _l2tm_reference(landmarks[b], options), atol=1e-4)


def _ttb_reference(features: np.ndarray, matrix: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w, c = features.shape
    out = np.zeros((out_h, out_w, c))
    for v in range(out_h):
        for u in range(out_w):
            x, y = (matrix[:2] @ [u + 0.5, v + 0.5, 0, 1]) - 0.5
            if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
                continue
            x0, y0 = int(np.floor(x)), int(np.floor(y))
            for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
                for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
                    if yy < h and xx < w:
                        out[v, u] += wy * wx * features[yy, xx]
    return out


def test_transform_tensor_bilinear():
    rng = np.random.default_rng(5)
    features = rng.normal(size=(2, 9, 11, 3))
    # Rotated, scaled crops that reach over the map's edges, and the identity (every sample on a pixel).
    matrices = np.stack([_shift(5, -1) @ _rotation(0.4) @ np.diag([0.9, 1.1, 1, 1]), np.eye(4)])
    inputs = [torch.from_numpy(features).float(), torch.from_numpy(matrices).float()]
    ours = mediapipe_ops.transform_tensor_bilinear(inputs, {"output_height": 9, "output_width": 11}).numpy()
    assert ours.shape == (2, 9, 11, 3)
    np.testing.assert_allclose(ours[1], features[1], atol=1e-6)
    outside = (_ttb_reference(features[0], matrices[0], 9, 11) == 0).all(axis=-1)
    assert outside.any() and not outside.all()
    for b in range(2):
        np.testing.assert_allclose(ours[b], _ttb_reference(features[b], matrices[b], 9, 11), atol=1e-5)


@pytest.mark.parametrize("dims", [2, 3])
def test_transform_landmarks(dims):
    rng = np.random.default_rng(6)
    landmarks, matrices = rng.normal(size=(2, 5, dims)), rng.normal(size=(2, 4, 4))
    inputs = [torch.from_numpy(landmarks).float(), torch.from_numpy(matrices).float()]
    ours = mediapipe_ops.transform_landmarks(inputs, {})
    for b in range(2):
        homogeneous = np.concatenate([landmarks[b, :, :2], np.zeros((5, 1)), np.ones((5, 1))], axis=1)
        expected = np.concatenate([homogeneous @ matrices[b, :2].T, landmarks[b, :, 2:]], axis=1)
        np.testing.assert_allclose(ours[b].numpy(), expected, atol=1e-5)


def _transpose_conv_reference(x, weight, bias, stride, padding):
    _, h, w, _ = x.shape
    cout, kh, kw, _ = weight.shape
    pads = [max(0, k - (n - 1) % s - 1) if padding == "SAME" else 0
            for k, n, s in ((kh, h, stride[0]), (kw, w, stride[1]))]
    out_h, out_w = stride[0] * (h - 1) + kh - pads[0], stride[1] * (w - 1) + kw - pads[1]
    out = np.tile(bias, (1, out_h, out_w, 1)).astype(np.float64)
    for i in range(h):
        for j in range(w):
            for ky in range(kh):
                for kx in range(kw):
                    y, xx = i * stride[0] - pads[0] // 2 + ky, j * stride[1] - pads[1] // 2 + kx
                    if 0 <= y < out_h and 0 <= xx < out_w:
                        out[0, y, xx] += weight[:, ky, kx] @ x[0, i, j]
    return out


@pytest.mark.parametrize("padding,stride,kernel", [("SAME", [2, 2], [2, 2]), ("SAME", [2, 3], [3, 4]),
                                                   ("VALID", [2, 1], [3, 2])])
def test_transpose_conv_bias(padding, stride, kernel):
    rng = np.random.default_rng(7)
    x, weight, bias = rng.normal(size=(1, 4, 5, 3)), rng.normal(size=(2, *kernel, 3)), rng.normal(size=2)
    ours = mediapipe_ops.transpose_conv_bias([torch.from_numpy(a).float() for a in (x, weight, bias)],
                                  {"padding": padding, "stride": stride}).numpy()
    reference = _transpose_conv_reference(x, weight, bias, stride, padding)
    assert ours.shape == reference.shape
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_every_operator_read_has_a_kernel():
    assert set(tflite_reader.READERS) == set(KERNELS)
