"""Backends (torch, torch-bf16, onnx, openvino), the measured auto choice, ONNX export, and speed
against the TFLite runtime."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch

import portrait_stylize as ps
from portrait_stylize.cli import main
from portrait_stylize.convert.ttn_releases import read_tflite, ttn_from_weights
from portrait_stylize.models.serialization import save_style
from portrait_stylize.models.ttn import TTN
from portrait_stylize.options import BACKENDS
from portrait_stylize.runtime import backends, cpu, openvino_graph, ranking
from portrait_stylize.runtime import runners as runners_module
from portrait_stylize.runtime.backends import auto_backend, choose_runners, resolve_backend
from portrait_stylize.runtime.onnx_export import ExportError, export_onnx, onnx_bytes, onnx_session
from portrait_stylize.runtime.runners import make_runner

from helpers import REPO, lively_style_model, psnr

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def whitebox(fixtures):
    """The real White-box TTN (trained weights give realistic activations for precision checks)."""
    path = fixtures / "weights" / "whitebox_cartoon_gan_dr.tflite"
    return ttn_from_weights(read_tflite(path), str(path))


@pytest.mark.parametrize("backend,min_psnr",
                         [("torch-bf16", 45.0), ("onnx", 80.0), ("openvino", 80.0), ("onnx-int8", 35.0),
                          ("openvino-bf16", 45.0), ("openvino-int8", 35.0)])
def test_fast_backends_match_float32(whitebox, backend, min_psnr, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # int8: quantized here, not taken from a cache
    x = torch.rand(1, 3, 75, 122, generator=torch.Generator().manual_seed(0)) * 2 - 1  # odd, non-square
    with torch.inference_mode():
        reference = whitebox(x)
        out = make_runner(whitebox, backend, CPU)(x)
    assert out.shape == reference.shape and out.dtype == torch.float32
    assert psnr(out.numpy(), reference.numpy()) >= min_psnr


@pytest.mark.slow
def test_stylizer_backends_agree_on_a_portrait(portraits, tmp_path, monkeypatch):
    from portrait_stylize.runtime import quantize

    # This test style's random weights are 35 dB from float32 in int8: under the floor a trained
    # style must pass (TestInt8), but what is checked here is the pipeline around the backends.
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(quantize, "MIN_PORTRAIT_PSNR", 30.0)
    model = lively_style_model(channel_order="bgr")
    outputs = {b: np.asarray(ps.Stylizer(model, ps.StyleSpec(name="t", kind="local"), backend=b)(portraits[0]),
                             np.float64) for b in BACKENDS}
    assert abs(outputs["onnx"] - outputs["torch"]).max() <= 1.0
    assert abs(outputs["openvino"] - outputs["torch"]).max() <= 1.0
    for backend in ("onnx-int8", "openvino-int8"):
        assert psnr(outputs[backend], outputs["torch"], peak=255.0) >= 35.0
    for backend in ("torch-bf16", "openvino-bf16"):
        assert psnr(outputs[backend], outputs["torch"], peak=255.0) >= 40.0


def test_backend_choice_and_errors(monkeypatch):
    monkeypatch.setattr(backends, "auto_backend", lambda device, net=None, side=512: "onnx")
    assert resolve_backend("auto", CPU) == "onnx" and resolve_backend(None, CPU) == "onnx"
    missing = {"onnxruntime"}
    monkeypatch.setattr(cpu, "has_packages", lambda *names: not missing & set(names))
    for backend in ("onnx", "onnx-int8"):
        with pytest.raises(ValueError, match=f"the {backend} backend needs onnx onnxruntime: pip install onnx onnxr"):
            resolve_backend(backend, CPU)
    with pytest.raises(ValueError, match="the openvino-int8 backend needs onnx onnxruntime openvino: pip install"):
        resolve_backend("openvino-int8", CPU)
    assert resolve_backend("openvino", CPU) == "openvino" and resolve_backend("openvino-bf16", CPU) == "openvino-bf16"
    assert "onnx-int8" not in backends.cpu_candidates() and "openvino-int8" not in backends.cpu_candidates()
    missing = {"openvino"}
    for backend in ("openvino", "openvino-bf16"):
        with pytest.raises(ValueError, match=f"the {backend} backend needs onnx openvino"):
            resolve_backend(backend, CPU)
    with pytest.raises(ValueError, match="unknown backend 'tensorrt'"):
        resolve_backend("tensorrt", CPU)
    for backend in ("onnx", "onnx-int8", "openvino", "openvino-bf16", "openvino-int8"):
        with pytest.raises(ValueError, match=f"the {backend} backend runs on the CPU"):
            resolve_backend(backend, torch.device("cuda"))
    st = ps.load_style("toon", backend="onnx")  # built-in filters are not networks: always torch
    assert st.backend == "torch" and "backend='torch'" in repr(st)


class TestAutoMeasuresOnce:
    """`auto` on the CPU times the candidates once per machine, picks the fastest and remembers it."""

    @pytest.fixture
    def measured(self, tmp_path, monkeypatch):
        monkeypatch.setenv("HF_HOME", str(tmp_path))
        ranking.forget()
        calls = []

        def fake(candidates, side=ranking.PROBE_SIDE, rounds=4, net=None):
            calls.append((candidates, ranking.network_key(net, side)))
            return {b: {"torch": 0.9, "onnx": 0.5, "openvino": 0.4, "torch-bf16": 0.7, "onnx-int8": 0.3,
                        "openvino-bf16": 0.35, "openvino-int8": 0.32}[b]
                    for b in candidates}

        monkeypatch.setattr(ranking, "measure_backends", fake)
        yield calls
        ranking.forget()

    def test_the_fastest_is_picked_and_remembered_on_disk(self, measured):
        candidates = ("torch", "onnx", "openvino")
        assert ranking.ranked_cpu_backends(candidates, 2) == ("openvino", "onnx", "torch")
        saved = json.loads(ranking.choice_file().read_text())
        (entry,) = saved.values()
        assert entry["ranking"] == ["openvino", "onnx", "torch"]
        assert entry["seconds"] == {"torch": 0.9, "onnx": 0.5, "openvino": 0.4}
        ranking.forget()  # a new process: read from disk, not measured again
        assert ranking.ranked_cpu_backends(candidates, 2)[0] == "openvino" and len(measured) == 1
        assert ranking.ranked_cpu_backends(("torch", "onnx"), 2)[0] == "onnx" and len(measured) == 2
        assert ranking.ranked_cpu_backends(("torch",), 2) == ("torch",) and len(measured) == 2  # nothing to choose

    def test_a_ranking_measured_on_graphs_made_another_way_is_measured_again(self, measured, monkeypatch):
        """A new way of making the graphs (onnx_export.GRAPH_VERSION) changes their speeds."""
        candidates = ("torch", "onnx", "openvino")
        ranking.ranked_cpu_backends(candidates, 2)
        ranking.forget()
        monkeypatch.setattr(ranking, "GRAPH_VERSION", ranking.GRAPH_VERSION + 1)
        ranking.ranked_cpu_backends(candidates, 2)
        assert len(measured) == 2 and len(json.loads(ranking.choice_file().read_text())) == 2

    def test_each_network_architecture_and_side_has_its_own_ranking(self, measured):
        candidates = ("torch", "onnx")
        small, dctnet = TTN(channels=8, num_blocks=1), TTN()
        ranking.ranked_cpu_backends(candidates, 2)
        ranking.ranked_cpu_backends(candidates, 2, dctnet, ranking.PROBE_SIDE)  # the default: no new measurement
        ranking.ranked_cpu_backends(candidates, 2, small, 256)
        ranking.ranked_cpu_backends(candidates, 2, TTN(channels=8, num_blocks=1), 256)  # same architecture
        ranking.ranked_cpu_backends(candidates, 2, small, 512)
        assert [key for _, key in measured] == [ranking.network_key(None, 512), ranking.network_key(small, 256),
                                                ranking.network_key(small, 512)]
        assert '"channels": 8' in measured[1][1] and measured[1][1].endswith("at 256x256")
        assert len(json.loads(ranking.choice_file().read_text())) == 3

    def test_a_style_is_ranked_on_its_largest_network_at_its_tile_size(self, measured, monkeypatch):
        head, bg = TTN(channels=8, num_blocks=1), TTN(channels=16, num_blocks=2)
        runners = choose_runners({"head": head, "bg": bg}, "auto", CPU, tile_size=256)
        choose_runners({"head": head, "bg": bg}, None, CPU, tile_size=2048)  # bounded: at most 512
        assert [key for _, key in measured] == [ranking.network_key(bg, 256), ranking.network_key(bg, 512)]
        # The measured network's first real calls check the ranking; the other's are not timed.
        assert runners.checked == "bg" and runners.check.backend == runners.backend
        monkeypatch.setattr(runners_module, "make_runner", lambda net, backend, device: net)
        assert runners["bg"].runner is bg and runners["head"] is head
        assert choose_runners({"head": head, "bg": bg}, "torch", CPU).check is None  # named: nothing to check

    def test_auto_falls_back_to_the_fastest_float_backend(self, measured, monkeypatch):
        monkeypatch.setattr(backends, "cpu_candidates", lambda net=None: ["torch", "onnx-int8", "onnx"])
        assert backends.auto_backend(CPU) == "onnx-int8" and backends.auto_fallback(CPU) == "onnx"

    def test_a_damaged_choice_file_is_measured_again_and_rewritten(self, measured):
        ranking.choice_file().parent.mkdir(parents=True)
        ranking.choice_file().write_text("{not json")
        assert ranking.ranked_cpu_backends(("torch", "onnx"), 2)[0] == "onnx" and len(measured) == 1
        assert json.loads(ranking.choice_file().read_text())  # valid again

    def test_the_real_measurement_times_every_candidate(self):
        seconds = ranking.measure_backends(tuple(backends.cpu_candidates()), side=64, rounds=2)
        assert list(seconds) == backends.cpu_candidates() and all(t > 0 for t in seconds.values())
        style_net = TTN(channels=8, num_blocks=1)
        before = {k: v.clone() for k, v in style_net.state_dict().items()}
        seconds = ranking.measure_backends(("torch", "onnx"), side=32, rounds=1, net=style_net)
        assert set(seconds) == {"torch", "onnx"}
        assert all(torch.equal(before[k], v) for k, v in style_net.state_dict().items())  # timed on a copy

    def test_a_backend_that_cannot_run_the_network_is_ranked_last(self):
        class Plain(torch.nn.Module):  # no U-Net and guided filter apart: the int8 backends cannot split it
            size_multiple = 1

            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 3, 1)

            def forward(self, x):
                return self.conv(x)

        seconds = ranking.measure_backends(("onnx-int8", "torch"), side=16, rounds=1, net=Plain())
        assert seconds["onnx-int8"] == float("inf") and 0 < seconds["torch"] < float("inf")
        for backend in ("onnx-int8", "openvino-int8", "openvino-bf16"):
            with pytest.raises(ValueError, match=f"the {backend} backend runs a network's U-Net apart from its "
                                                 "guided filter, and Plain has none; use torch, onnx or openvino"):
                make_runner(Plain(), backend, CPU)

    def test_rounds_interleave_the_backends_and_keep_each_ones_fastest(self, monkeypatch):
        order, times = [], {"a": iter([9, 5, 3, 4]), "b": iter([9, 2, 6, 7]), "c": iter([9, 8, 8, 1])}
        clock = [0.0]

        def runner(backend):
            def run(x):
                order.append(backend)
                clock[0] += next(times[backend])
            return run

        monkeypatch.setattr(ranking, "make_runner", lambda net, backend, device: runner(backend))
        monkeypatch.setattr(ranking.time, "perf_counter", lambda: clock[0])
        seconds = ranking.measure_backends(("a", "b", "c"), side=8, rounds=3)
        assert order == ["a", "b", "c"] + ["a", "b", "c"] + ["b", "c", "a"] + ["c", "a", "b"]  # warm-up, 3 rounds
        assert seconds == {"a": 3, "b": 2, "c": 1}  # the warm-up (9) never counts

    @pytest.mark.parametrize("call_seconds,share,forgotten", [(2.0, 0.02, True), (0.5, 0.02, False),
                                                               (2.0, 0.6, False)])
    def test_real_calls_that_contradict_the_ranking_make_the_next_load_measure(
            self, measured, monkeypatch, caplog, call_seconds, share, forgotten):
        """The ranking says onnx 0.5 s, torch (the runner-up) 0.9 s at 64²: calls of onnx at 2 s
        on a quiet machine contradict it (over 1.5 x 0.9); at 0.5 s, or while the machine is
        busy, they do not."""
        candidates = ("torch", "onnx")
        check = ranking.CallCheck(candidates, 2, None, 64)
        assert check.backend == "onnx" and ranking.remembered_ranking(candidates, 2, None, 64) is not None
        clock = [0.0]

        def onnx_runner(x):
            clock[0] += call_seconds
            return x

        monkeypatch.setattr(ranking.time, "perf_counter", lambda: clock[0])
        monkeypatch.setattr(ranking.cpu, "others_share_since", lambda start: share)
        run = check.timed(onnx_runner)
        assert run.runner is onnx_runner
        x = torch.zeros(1, 3, 64, 64)
        with caplog.at_level(logging.WARNING):
            run(torch.zeros(1, 3, 32, 32))
            for calls in range(1 + ranking.CHECKED_CALLS):  # the first call at each shape is not counted
                assert run(x) is x
                assert ranking.remembered_ranking(candidates, 2, None, 64) is not None or calls == ranking.CHECKED_CALLS
        assert (ranking.remembered_ranking(candidates, 2, None, 64) is None) == forgotten
        assert ("the backend ranking is forgotten" in caplog.text) == forgotten
        clock_before = clock[0]
        run(x)  # checked: later calls pass through untimed
        assert clock[0] == clock_before + call_seconds and len(measured) == 1
        ranking.ranked_cpu_backends(candidates, 2, None, 64)
        assert len(measured) == (2 if forgotten else 1)  # the next load measured again

    def test_a_ranking_measured_while_the_machine_was_busy_is_not_kept(self, measured, monkeypatch, caplog):
        @contextlib.contextmanager
        def busy():
            yield lambda: 0.6

        monkeypatch.setattr(ranking.cpu, "others_share", busy)
        with caplog.at_level(logging.WARNING):
            assert ranking.ranked_cpu_backends(("torch", "onnx"), 2)[0] == "onnx"
        assert "other processes used 60% of the CPU" in caplog.text and not ranking.choice_file().exists()
        ranking.ranked_cpu_backends(("torch", "onnx"), 2)
        assert len(measured) == 1  # the next loads use it for a while (measuring costs seconds) ...
        now = time.monotonic()
        monkeypatch.setattr(ranking.time, "monotonic", lambda: now + ranking.PROVISIONAL_SECONDS + 1)
        ranking.ranked_cpu_backends(("torch", "onnx"), 2)
        assert len(measured) == 2  # ... then measure again

        @contextlib.contextmanager
        def quiet():
            yield lambda: 0.02

        monkeypatch.setattr(ranking.cpu, "others_share", quiet)
        entry = ranking.measure_ranking(("torch", "onnx"), 2)
        assert entry["remembered"] and entry["others_share"] == 0.02
        assert json.loads(ranking.choice_file().read_text())


def test_backends_command_shows_the_remembered_ranking_and_measures_on_request(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setattr(backends, "cpu_candidates", lambda net=None: ["torch", "onnx"])
    assert main(["backends"]) == 0
    assert "candidates: torch, onnx" in capsys.readouterr().out.splitlines()[2]
    monkeypatch.setattr(ranking, "measure_backends", lambda candidates, side, net=None: {"torch": 0.9, "onnx": 0.25})

    @contextlib.contextmanager
    def quiet():
        yield lambda: 0.03

    monkeypatch.setattr(ranking.cpu, "others_share", quiet)
    assert main(["backends", "--measure"]) == 0
    measured = capsys.readouterr().out
    assert "  onnx" in measured and "250.0 ms" in measured and "remembered in" in measured
    assert main(["backends"]) == 0  # read back from the file
    shown = capsys.readouterr().out
    assert shown.index("  onnx") < shown.index("  torch") and "3% of the CPU" in shown and "not measured" not in shown
    assert "network: TTN " in shown and "at 512x512" in shown
    style = tmp_path / "style"
    save_style(lively_style_model(head={"channels": 8, "num_blocks": 1}), style)
    assert main(["backends", "--style", str(style)]) == 0  # another architecture: not measured yet
    shown = capsys.readouterr().out
    assert "not measured" in shown and '"channels": 8' in shown
    assert main(["backends", "--style", "toon"]) == 0
    assert "a built-in filter" in capsys.readouterr().out
    assert main(["backends", "--style", "no-such-style-anywhere"]) == 2  # as run --style: a bad name
    err = capsys.readouterr().err
    assert "no-such-style-anywhere" in err and "Traceback" not in err


def test_others_share_sees_a_busy_neighbour():
    """One process spinning on one of the machine's cores: about 1 / cores of its time."""
    spin = subprocess.Popen([sys.executable, "-c", "import time\nend = time.time() + 3\nwhile time.time() < end: pass"])
    try:
        time.sleep(0.3)  # started
        with cpu.others_share() as share:
            time.sleep(1.0)
    finally:
        spin.kill()
    assert share() is not None and share() >= 0.7 / (os.cpu_count() or 1), share()
    with cpu.others_share() as instant:
        pass
    assert instant() is None  # too short to measure


def test_export_onnx_runs_at_any_size(tmp_path):
    model = lively_style_model(bg={"gf_eps": 5e-3})
    files = export_onnx(model, tmp_path / "onnx")
    assert sorted(f.name for f in files) == ["bg.onnx", "config.json", "head.onnx"]
    session = onnx_session(tmp_path / "onnx" / "bg.onnx")
    x = torch.rand(2, 3, 36, 132) * 2 - 1
    with torch.inference_mode():
        expected = model.bg(x).numpy()
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected).max() <= 1e-4


def test_failed_export_check_leaves_no_output(tmp_path, monkeypatch):
    import portrait_stylize.runtime.onnx_export as export

    monkeypatch.setattr(export, "max_onnx_difference", lambda net, session: 0.5)
    with pytest.raises(ExportError, match="differs from PyTorch by 5.00e-01"):
        export_onnx(lively_style_model(), tmp_path / "onnx")
    assert list(tmp_path.iterdir()) == []


def test_cli_export_onnx(tmp_path, capsys):
    style = tmp_path / "style"
    save_style(lively_style_model(), style)
    assert main(["export-onnx", str(style), "-o", str(tmp_path / "onnx")]) == 0
    assert (tmp_path / "onnx" / "head.onnx").is_file()
    assert main(["export-onnx", "toon", "-o", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "nothing to export" in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.slow
def test_fastest_backend_against_tflite(fixtures):
    """Every backend keeps its quality floor against float32 (on the benchmark's noisy test input
    and on a portrait; int8 35 and 40 dB), the auto backend beats float32 PyTorch everywhere, and
    the TFLite runtime where the CPU has AMX tiles (docs/performance.md has every CPU class)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from bench_peer_tflite import compare

    auto = auto_backend(CPU)
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # not 2, so that a compare() leaking its 2 threads would show below
    try:
        rows = {r["runtime"]: r for r in compare(fixtures / "weights" / "whitebox_cartoon_gan_dr.tflite", size=512,
                                                 threads=2, repeats=5, backends=backends.cpu_candidates())}
        assert torch.get_num_threads() == 1  # the benchmark restored the caller's setting
    finally:
        torch.set_num_threads(before)
    floors = {"torch": (100, 100), "onnx": (100, 100), "openvino": (100, 100), "torch-bf16": (55, 55),
              "openvino-bf16": (55, 55), "onnx-int8": (35, 40), "openvino-int8": (35, 40)}
    for backend in backends.cpu_candidates():
        on_noise, on_portrait = floors[backend]
        assert rows[backend]["psnr"] >= on_noise and rows[backend]["psnr_portrait"] >= on_portrait, rows[backend]
    assert rows["torch"]["ms"] / rows[auto]["ms"] >= 1.2, rows
    if getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)():
        assert rows[auto]["ratio"] >= 1.0, rows


@pytest.fixture(scope="module")
def small_ttn():
    torch.manual_seed(0)
    return TTN(channels=8, num_blocks=1).eval()


class TestInt8:
    """The int8 U-Net: calibrated on portraits, cached, refused under the floor, and replaced by
    the next fastest backend when `auto` had picked it."""

    @pytest.mark.slow
    def test_quantized_once_then_read_from_the_cache(self, whitebox, tmp_path, monkeypatch):
        from portrait_stylize.runtime import quantize

        monkeypatch.setenv("HF_HOME", str(tmp_path))
        made = quantize.quantized_unet(whitebox)
        assert made.method in ("minmax", "percentile", "entropy")
        assert made.psnr >= quantize.MIN_PORTRAIT_PSNR and made.texture_psnr >= quantize.MIN_TEXTURE_PSNR
        info = json.loads(next(quantize.cache_dir().glob("*.json")).read_text())
        assert (info["psnr"], info["texture_psnr"]) == (made.psnr, made.texture_psnr)
        assert set(info["all"]) == {"minmax", "percentile", "entropy"}
        # The method kept is the one with the largest margin over the nearer floor.
        margins = [min(p - quantize.MIN_PORTRAIT_PSNR, t - quantize.MIN_TEXTURE_PSNR) for p, t in info["all"].values()]
        assert made.margin() == pytest.approx(max(margins), abs=0.01)
        import onnxruntime.quantization as ortq

        monkeypatch.setattr(ortq, "quantize_static", lambda *a, **k: pytest.fail("quantized again"))
        assert quantize.quantized_unet(whitebox) == made
        next(quantize.cache_dir().glob("*.json")).write_text("{damaged")
        monkeypatch.undo()
        monkeypatch.setenv("HF_HOME", str(tmp_path))
        assert quantize.quantized_unet(whitebox).psnr == made.psnr  # made again, same result

    def test_the_cache_key_tells_the_cpus_int8_arithmetic_apart(self, monkeypatch):
        """Without VNNI the byte products saturate: a check made with VNNI does not hold there."""
        from portrait_stylize.runtime import quantize

        net = lively_style_model().head
        keys = {}
        for units in (True, False, True):
            monkeypatch.setattr(cpu, "has_int8_units", lambda units=units: units)
            keys.setdefault(units, set()).add(quantize._key(net))
        assert len(keys[True]) == len(keys[False]) == 1 and keys[True] != keys[False]

    def test_the_cache_key_changes_with_the_way_graphs_are_made(self, monkeypatch):
        from portrait_stylize.runtime import quantize

        net = lively_style_model().head
        before = quantize._key(net)
        monkeypatch.setattr(quantize, "GRAPH_VERSION", quantize.GRAPH_VERSION + 1)
        assert quantize._key(net) != before

    @pytest.mark.slow
    def test_openvino_runs_the_same_int8_network_as_onnx_runtime(self, whitebox, tmp_path, monkeypatch):
        from portrait_stylize.runtime import quantize

        monkeypatch.setenv("HF_HOME", str(tmp_path))
        pictures = [torch.from_numpy(quantize._portrait(quantize.HELD_OUT)),
                    torch.from_numpy(quantize.texture(quantize.HELD_OUT_TEXTURE))]
        with torch.inference_mode():
            references = [whitebox(x).numpy() for x in pictures]
            outputs = {b: [make_runner(whitebox, b, CPU)(x).numpy() for x in pictures]
                       for b in ("onnx-int8", "openvino-int8")}
        made = quantize.quantized_unet(whitebox)
        for backend, (portrait, texture) in outputs.items():
            # The PSNRs the quantizer measured (ONNX Runtime), and OpenVINO's within 0.3 dB of them.
            assert psnr(portrait, references[0]) == pytest.approx(made.psnr, abs=0.3 if "openvino" in backend else 1e-6)
            assert psnr(texture, references[1]) == pytest.approx(made.texture_psnr,
                                                                 abs=0.3 if "openvino" in backend else 1e-6)

    @pytest.mark.slow
    def test_under_the_floor_it_is_refused_or_auto_falls_back(self, tmp_path, monkeypatch):
        from portrait_stylize.runtime import quantize

        monkeypatch.setenv("HF_HOME", str(tmp_path))
        monkeypatch.setattr(quantize, "MIN_TEXTURE_PSNR", 99.0)  # no int8 network is that close
        model = lively_style_model()
        spec = ps.StyleSpec(name="t", kind="local")
        image = np.random.default_rng(0).integers(0, 255, (64, 96, 3), dtype=np.uint8)
        for int8 in ("onnx-int8", "openvino-int8"):
            with pytest.raises(quantize.QuantizationError,
                               match=r"dB from float32 on a held-out portrait and .* dB on a held-out texture "
                                     r"\(the floors are 40 and 99 dB\); use the openvino, openvino-bf16 or onnx"):
                ps.Stylizer(model, spec, backend=int8, face_backend="mediapipe")(image)
        ranked = ("openvino-int8", "onnx-int8", "onnx", "torch")
        monkeypatch.setattr(ranking, "ranked_cpu_backends", lambda candidates, threads, net=None, side=512: ranked)
        st = ps.Stylizer(model, spec, face_backend="mediapipe")
        assert st.backend == "openvino-int8"
        out = st(image)
        assert st.backend == "onnx"
        expected = ps.Stylizer(model, spec, backend="onnx", face_backend="mediapipe")(image)
        assert np.array_equal(np.asarray(out), np.asarray(expected))

    def test_only_an_auto_choice_of_int8_gets_a_fallback(self, small_ttn, monkeypatch):
        monkeypatch.setattr(ranking, "ranked_cpu_backends",
                            lambda candidates, threads, net=None, side=512: ("onnx-int8", "onnx", "torch"))
        nets = {"bg": small_ttn}
        for choice in (None, "auto"):
            runners = choose_runners(nets, choice, CPU)
            assert (runners.backend, runners.fallback, runners.nets) == ("onnx-int8", "onnx", nets)
            assert not runners  # each runner is made on first use
        for named in ("onnx-int8", "openvino"):  # a backend the caller named raises rather than switch
            runners = choose_runners(nets, named, CPU)
            assert (runners.backend, runners.fallback) == (named, None)
        builtin = choose_runners({}, "onnx", CPU)  # no sub-networks (a built-in filter): always torch
        assert (builtin.backend, builtin.fallback) == ("torch", None)


class TestOpenVINOGraph:
    def test_compiled_once_per_shape_keeping_the_latest_four(self, small_ttn):
        net = small_ttn
        graph = openvino_graph.OpenVINOGraph(onnx_bytes(net), threads=1)
        for side in (16, 20, 24, 16, 28, 32):
            x = torch.rand(1, 3, side, side).numpy() * 2 - 1
            with torch.inference_mode():
                expected = net.forward_aligned(torch.from_numpy(x)).numpy()
            assert np.abs(graph(x) - expected).max() <= 1e-4
        assert [shape[-1] for shape in graph._compiled.shapes()] == [24, 16, 28, 32]

    def test_a_whole_image_pass_gives_large_tiles_buffers_back(self, monkeypatch):
        """After each whole-image pass the pipeline has the OpenVINO graphs give back what they
        hold for large inputs (a 4K tile's buffers would stay held through the face pass and
        the regions), once per picture, not per tile."""
        from portrait_stylize.common import openvino_compiled

        monkeypatch.setattr(openvino_compiled, "RELEASE_VALUES", 3 * 100 * 100)
        released = []
        real = openvino_compiled.CompiledPerShape.release
        monkeypatch.setattr(openvino_compiled.CompiledPerShape, "release",
                            lambda self: released.append([s for s in self.shapes()]) or real(self))
        model = lively_style_model(head={"channels": 8})
        st = ps.Stylizer(model, ps.StyleSpec(name="t", kind="local"), device="cpu", backend="openvino", tile_size=128)
        with torch.inference_mode():
            st.stylize_image(torch.rand(1, 3, 700, 300), None, False)  # 2 tiles of one window shape
        assert released == [[(1, 3, 640, 300)]]  # the windows' shape (padded to 4), given back once
        assert st._runners.tiling == (1, "fixed")

    def test_calls_from_several_threads_each_get_their_own_answer(self, small_ttn):
        net = small_ttn
        graph = openvino_graph.OpenVINOGraph(onnx_bytes(net), threads=1)
        inputs = [torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(i)).numpy() for i in range(8)]
        alone = [graph(x) for x in inputs]
        together: list = [None] * 8

        def work(i):
            together[i] = graph(inputs[i])

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(np.array_equal(a, b) for a, b in zip(alone, together, strict=True))
