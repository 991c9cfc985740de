"""OpenVINOTFLiteGraph computes what TFLiteGraph computes: on the shipped face detectors (fixed
size, any size, batches) and on a small hand-made graph with the operators and options the
detectors do not use (a PAD of height and width, pooling with SAME padding and a fused RELU6, a
broadcast constant, the three resize conventions, a concatenation of feature maps, a strided
convolution with odd padding, a depthwise multiplier, a RESHAPE)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from portrait_stylize.errors import InvalidArgumentError
from portrait_stylize.faces import face_models
from portrait_stylize.models.tflite_graph import SPEC_FORMAT, SPEC_VERSION, TFLiteGraph

from helpers import openvino_or_skip

openvino_or_skip()
from portrait_stylize.models.tflite_openvino import OpenVINOTFLiteGraph, supports  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DETECTORS = ("face_detection_short_range", "face_detection_full_range_sparse")


def _torch(graph: TFLiteGraph, x: np.ndarray, any_size: bool = False) -> list[np.ndarray]:
    with torch.inference_mode():
        inputs = torch.from_numpy(x)
        return [out.numpy() for out in (graph.forward_any_size(inputs) if any_size else graph(inputs))]


def _close(ours: list[np.ndarray], reference: list[np.ndarray]) -> None:
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference):
        assert a.shape == b.shape and a.dtype == np.float32
        np.testing.assert_allclose(a, b, atol=2e-4 * max(1.0, float(np.abs(b).max())), rtol=0)


def _hand_made() -> TFLiteGraph:
    rng = np.random.default_rng(0)
    tensors = {0: [1, 8, 8, 4], 1: [1, 11, 9, 4], 2: [1, 6, 5, 4], 3: [1, 6, 5, 4], 4: [1, 7, 9, 4],
               5: [1, 7, 9, 4], 6: [1, 7, 9, 4], 7: [1, 7, 9, 12], 8: [1, 4, 5, 3], 9: [1, 60, 1],
               10: [1, 6, 5, 8]}
    constants = {20: rng.normal(size=4), 21: rng.normal(size=(3, 3, 3, 12)), 22: rng.normal(size=3),
                 23: rng.normal(size=(1, 3, 3, 8)), 24: rng.normal(size=8)}
    conv = {"dilation": [1, 1], "padding": "SAME"}
    resize = {"size": [7, 9], "align_corners": False, "half_pixel_centers": False}
    ops = [("PAD", [0], 1, {"paddings": [[0, 0], [1, 2], [0, 1], [0, 0]]}),
           ("MAX_POOL_2D", [1], 2, {"filter": [2, 2], "stride": [2, 2], "padding": "SAME", "activation": "RELU6"}),
           ("ADD", [2, 20], 3, {"activation": "NONE"}),
           ("RESIZE_BILINEAR", [3], 4, {**resize, "align_corners": True}),
           ("RESIZE_BILINEAR", [3], 5, resize),
           ("RESIZE_BILINEAR", [3], 6, {**resize, "half_pixel_centers": True}),
           ("CONCATENATION", [4, 5, 6], 7, {"axis": -1, "activation": "NONE"}),
           ("CONV_2D", [7, 21, 22], 8, {**conv, "stride": [2, 2], "activation": "RELU_N1_TO_1"}),
           ("RESHAPE", [8], 9, {"shape": [1, -1, 1]}),
           ("DEPTHWISE_CONV_2D", [3, 23, 24], 10, {**conv, "stride": [1, 1], "activation": "RELU"})]
    spec = {"format": SPEC_FORMAT, "version": SPEC_VERSION, "source": "hand-made", "inputs": [0], "outputs": [9, 10],
            "tensors": {str(i): {"name": f"t{i}", "shape": shape} for i, shape in tensors.items()},
            "constants": {str(i): {"name": f"c{i}", "shape": list(v.shape)} for i, v in constants.items()},
            "ops": [{"type": kind, "inputs": inputs, "outputs": [output], "options": options}
                    for kind, inputs, output, options in ops]}
    return TFLiteGraph(spec, {f"t{i}": torch.from_numpy(v.astype(np.float32)) for i, v in constants.items()}).eval()


class TestForward:
    @pytest.mark.parametrize("name", DETECTORS)
    def test_the_detectors_on_batches(self, name):
        graph = face_models.load_face_model(name)
        compiled = OpenVINOTFLiteGraph(graph, threads=1)
        side = graph.graph_spec()["tensors"][str(graph.graph_spec()["inputs"][0])]["shape"][1]
        for batch in (1, 3):
            x = np.random.default_rng(batch).uniform(-1, 1, (batch, side, side, 3)).astype(np.float32)
            _close(list(compiled.forward(x)), _torch(graph, x))

    def test_operators_the_detectors_do_not_use(self):
        graph = _hand_made()
        x = np.random.default_rng(1).normal(size=(2, 8, 8, 4)).astype(np.float32)
        ours, reference = list(OpenVINOTFLiteGraph(graph, threads=1).forward(x)), _torch(graph, x)
        _close(ours, reference)
        assert np.ptp(reference[0]) > 1 and (reference[1] == 0).mean() > 0.2  # the activations did something


class TestForwardAnySize:
    def test_the_short_range_detector_on_other_sizes(self):
        graph = face_models.load_face_model("face_detection_short_range")
        compiled = OpenVINOTFLiteGraph(graph, threads=1)
        for shape in ((1, 256, 384, 3), (2, 160, 128, 3), (1, 256, 384, 3)):
            x = np.random.default_rng(shape[1]).uniform(-1, 1, shape).astype(np.float32)
            _close(list(compiled.forward_any_size(x)), _torch(graph, x, any_size=True))

    def test_refuses_what_the_graph_cannot_take(self):
        compiled = OpenVINOTFLiteGraph(face_models.load_face_model("face_detection_short_range"), threads=1)
        with pytest.raises(InvalidArgumentError, match="multiples of 16"):
            compiled.forward_any_size(np.zeros((1, 100, 128, 3), np.float32))
        fixed = OpenVINOTFLiteGraph(face_models.load_face_model("face_detection_full_range_sparse"), threads=1)
        with pytest.raises(InvalidArgumentError, match="multiples of None"):
            fixed.forward_any_size(np.zeros((1, 192, 192, 3), np.float32))


class TestRunFaceModel:
    def test_detectors_run_in_openvino_the_others_in_pytorch(self):
        assert [supports(face_models.load_face_model(name)) for name in face_models.FACE_MODELS] == [
            True, True, False, False]
        x = np.random.default_rng(0).uniform(0, 1, (1, 256, 256, 3)).astype(np.float32)
        graph = face_models.load_face_model("selfie_segmentation")
        for ours, reference in zip(face_models.run_face_model("selfie_segmentation", x), _torch(graph, x)):
            np.testing.assert_array_equal(ours, reference)  # PyTorch itself
        x = np.random.default_rng(0).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
        _close(face_models.run_face_model("face_detection_short_range", x),
               _torch(face_models.load_face_model("face_detection_short_range"), x))
