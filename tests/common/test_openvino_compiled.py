"""common.openvino_compiled: one compile per input shape, a bounded number kept, thread-safe."""

import os
import subprocess
import sys
import threading

import numpy as np

from portrait_stylize.common.openvino_compiled import CompiledPerShape, cpu_config, infer

from helpers import openvino_or_skip

ov = openvino_or_skip()


def doubling_model():
    """A free-shape model: ``2 * x + 1`` on a (1, 1, H, W) float32 input."""
    import openvino.opset13 as ops

    x = ops.parameter([1, 1, -1, -1], np.float32)
    y = ops.add(ops.multiply(x, np.float32(2)), np.float32(1))
    return ov.Model([y], [x], "doubling")


class TestImportOpenvino:
    def test_sends_no_telemetry_and_runs_the_callers_script_once(self, tmp_path):
        """A user's script without a ``__main__`` guard, with Python 3.14's default start method on
        Linux: OpenVINO's telemetry would write a client id into the home folder and send it from a
        child process, and the forkserver would run the script's top level a second time."""
        script, home = tmp_path / "user_script.py", tmp_path / "home"
        home.mkdir()
        script.write_text(
            "import multiprocessing, sys\n"
            "multiprocessing.set_start_method('forkserver')\n"
            "print('top level ran', flush=True)\n"
            "from portrait_stylize.common.openvino_compiled import import_openvino\n"
            "import_openvino().Core()\n"
            "print('telemetry imported:', 'openvino_telemetry' in sys.modules)\n"
            "import openvino_telemetry  # hidden only while OpenVINO was imported\n")
        env = {k: v for k, v in os.environ.items() if k not in ("CI", "TF_BUILD", "JENKINS_URL")}  # its CI check
        run = subprocess.run([sys.executable, str(script)], env={**env, "HOME": str(home)}, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.stdout.count("top level ran") == 1, run.stdout
        assert "telemetry imported: False" in run.stdout
        assert list(home.iterdir()) == []

    def test_openvino_imported_first_is_left_as_it_is(self):
        """Whoever imports ``openvino`` before the package keeps its telemetry module (``CI=true``
        keeps it from sending anything here)."""
        code = ("import sys, openvino\n"
                "from portrait_stylize.common.openvino_compiled import import_openvino\n"
                "assert import_openvino() is openvino\n"
                "print('telemetry imported:', 'openvino_telemetry' in sys.modules)\n")
        run = subprocess.run([sys.executable, "-c", code], env={**os.environ, "CI": "true"}, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert "telemetry imported: True" in run.stdout


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


class _Recorded:
    """A compiled model that records (by its input shape) when its buffers are given back."""

    def __init__(self, compiled, log: list, shape: tuple[int, ...]) -> None:
        self._compiled, self._log, self._shape = compiled, log, shape

    def __getattr__(self, name):
        return getattr(self._compiled, name)

    def release_memory(self) -> None:
        self._log.append(self._shape)
        self._compiled.release_memory()


class TestLargeInputsGiveBuffersBack:
    def _recorded(self, keep: int = 4):
        compiled, log = CompiledPerShape(doubling_model(), cpu_config(1), keep=keep), []
        core = compiled._core

        class Core:
            def compile_model(self, model, device, config):
                shape = tuple(model.inputs[0].get_shape())
                return _Recorded(core.compile_model(model, device, config), log, shape)

        compiled._core = Core()
        return compiled, log

    def test_release_gives_back_only_the_large_shapes_buffers(self, monkeypatch):
        from portrait_stylize.common import openvino_compiled

        monkeypatch.setattr(openvino_compiled, "RELEASE_VALUES", 100)
        compiled, log = self._recorded()
        small, large = np.ones((1, 1, 9, 11), np.float32), np.ones((1, 1, 10, 10), np.float32)
        np.testing.assert_array_equal(compiled.run(small)[0], 3 * small)
        np.testing.assert_array_equal(compiled.run(large)[0], 3 * large)
        assert log == []  # running gives nothing back: a picture's tiles reuse the buffers
        compiled.release()
        assert log == [(1, 1, 10, 10)]
        np.testing.assert_array_equal(compiled.run(large)[0], 3 * large)  # the buffers are made again

    def test_threads_on_one_large_shape_each_get_their_answer_while_it_is_released(self, monkeypatch):
        from portrait_stylize.common import openvino_compiled

        monkeypatch.setattr(openvino_compiled, "RELEASE_VALUES", 100)
        compiled, log = self._recorded()
        inputs = [np.full((1, 1, 40, 40), i, np.float32) for i in range(6)]
        got: dict[int, np.ndarray] = {}

        def work(i: int) -> None:
            got[i] = compiled.run(inputs[i])[0]
            compiled.release()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for i in range(6):
            np.testing.assert_array_equal(got[i], 2 * inputs[i] + 1)
        assert len(log) == 6
