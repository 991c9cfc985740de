"""without_transpose_round_trips: transposes that undo an earlier one across element-wise
operations disappear, nothing else changes, and the graph computes the same values."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from portrait_stylize.models.ttn import TTN
from portrait_stylize.runtime.onnx_export import onnx_bytes, onnx_session
from portrait_stylize.runtime.onnx_layout import without_transpose_round_trips
from portrait_stylize.runtime.winograd import with_winograd_convolutions

NHWC, NCHW = [0, 2, 3, 1], [0, 3, 1, 2]


def _model(nodes, inputs=("a", "b")) -> bytes:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 2, 3, 4]) for n in inputs],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3, 4])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def _ops(model: bytes) -> list[str]:
    return [node.op_type for node in onnx.load_from_string(model).graph.node]


def _run(model: bytes) -> np.ndarray:
    rng = np.random.default_rng(0)
    feeds = {i.name: rng.normal(size=(1, 2, 3, 4)).astype(np.float32) for i in onnx.load_from_string(model).graph.input}
    return onnx_session(model).run(None, feeds)[0]


class TestWithoutTransposeRoundTrips:
    def test_round_trip_across_unary_and_binary_operations_is_removed(self):
        model = _model([
            helper.make_node("Transpose", ["a"], ["ta"], perm=NHWC),
            helper.make_node("Transpose", ["b"], ["tb"], perm=NHWC),
            helper.make_node("LeakyRelu", ["ta"], ["la"], alpha=0.2),
            helper.make_node("Add", ["la", "tb"], ["s"]),
            helper.make_node("Transpose", ["s"], ["y"], perm=NCHW),
        ])
        # A transpose writing a graph output stays (the output's name is its contract), so the
        # round trip ends in a Relu here.
        model = onnx.load_from_string(model)
        model.graph.node[-1].output[0] = "t"
        model.graph.node.append(helper.make_node("Relu", ["t"], ["y"]))
        model = model.SerializeToString()
        simplified = without_transpose_round_trips(model)
        assert "Transpose" not in _ops(simplified) and sorted(_ops(simplified)) == ["Add", "LeakyRelu", "Relu"]
        onnx.checker.check_model(onnx.load_from_string(simplified))
        np.testing.assert_array_equal(_run(simplified), _run(model))

    @pytest.mark.parametrize("middle,second", [
        (helper.make_node("Softmax", ["ta"], ["m"], axis=1), NCHW),  # not element-wise
        (helper.make_node("Relu", ["ta"], ["m"]), NHWC),  # not the inverse permutation
        (helper.make_node("Add", ["ta", "b"], ["m"]), NCHW),  # the other operand is not transposed
    ])
    def test_anything_else_is_left_alone(self, middle, second):
        model = _model([helper.make_node("Transpose", ["a"], ["ta"], perm=NHWC), middle,
                        helper.make_node("Transpose", ["m"], ["y"], perm=second)])
        model = onnx.load_from_string(model)
        model.graph.node[-1].output[0] = "t"
        model.graph.node.append(helper.make_node("Identity", ["t"], ["y"]))
        model = model.SerializeToString()
        assert without_transpose_round_trips(model) == model

    def test_the_winograd_ttn_loses_its_layout_round_trips(self):
        torch.manual_seed(0)
        net = TTN().eval()
        with torch.no_grad():
            for parameter in net.parameters():
                parameter.normal_(0.0, 0.05)
        graph = onnx_bytes(with_winograd_convolutions(net))
        simplified = without_transpose_round_trips(graph)
        names = [n.name for n in onnx.load_from_string(simplified).graph.node if n.op_type == "Transpose"]
        # Every residual block's convolutions now read channels-last rows directly.
        assert not any(name.startswith("/blocks.") and name.endswith("/Transpose") for name in names), names
        assert _ops(graph).count("Transpose") - len(names) >= 9
        x = (torch.rand(2, 3, 100, 132, generator=torch.Generator().manual_seed(1)) * 2 - 1).numpy()
        expected = onnx_session(graph).run(None, {"image": x})[0]
        np.testing.assert_allclose(onnx_session(simplified).run(None, {"image": x})[0], expected, atol=1e-6)

    def test_a_transpose_that_writes_a_graph_output_stays(self):
        model = _model([helper.make_node("Transpose", ["a"], ["ta"], perm=NHWC),
                        helper.make_node("Relu", ["ta"], ["m"]),
                        helper.make_node("Transpose", ["m"], ["y"], perm=NCHW)])
        assert without_transpose_round_trips(model) == model
