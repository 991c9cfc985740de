"""common.openvino_compiled: one compile per input shape, a bounded number kept, thread-safe."""

import threading

import numpy as np
import pytest

from portrait_stylize.common.openvino_compiled import CompiledPerShape, cpu_config, infer

ov = pytest.importorskip("openvino")


def doubling_model():
    """A free-shape model: ``2 * x + 1`` on a (1, 1, H, W) float32 input."""
    import openvino.opset13 as ops

    x = ops.parameter([1, 1, -1, -1], np.float32)
    y = ops.add(ops.multiply(x, np.float32(2)), np.float32(1))
    return ov.Model([y], [x], "doubling")


class TestCompiledPerShape:
    def test_compiles_each_shape_once_and_keeps_the_most_recent(self):
        compiled = CompiledPerShape(doubling_model(), cpu_config(1), keep=2)
        first = compiled((1, 1, 4, 4))
        assert compiled((1, 1, 4, 4)) is first
        compiled((1, 1, 8, 8))
        compiled((1, 1, 4, 4))  # used again: now the most recent
        compiled((1, 1, 6, 6))
        assert compiled.shapes() == [(1, 1, 4, 4), (1, 1, 6, 6)]
        assert compiled((1, 1, 4, 4)) is first

    def test_compiled_for_the_exact_shape(self):
        compiled = CompiledPerShape(doubling_model(), cpu_config(1), keep=2)
        x = np.arange(12, dtype=np.float32).reshape(1, 1, 3, 4)
        (y,) = infer(compiled(x.shape), x)
        np.testing.assert_array_equal(y, 2 * x + 1)
        assert tuple(compiled(x.shape).inputs[0].shape) == (1, 1, 3, 4)

    def test_threads_calling_at_once_share_one_compile_per_shape(self):
        compiled = CompiledPerShape(doubling_model(), cpu_config(1), keep=4)
        got = []
        threads = [threading.Thread(target=lambda: got.append(compiled((1, 1, 5, 5)))) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len({id(c) for c in got}) == 1 and compiled.shapes() == [(1, 1, 5, 5)]


def test_cpu_config_sets_the_precision_explicitly():
    assert cpu_config(3)["INFERENCE_NUM_THREADS"] == 3
    assert cpu_config(1, "bf16")["INFERENCE_PRECISION_HINT"] == "bf16"
    assert cpu_config(1)["INFERENCE_PRECISION_HINT"] == "f32"
