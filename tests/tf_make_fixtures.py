"""Build TensorFlow fixtures for the converter tests: runs under a Python that has TensorFlow.

    python tests/tf_make_fixtures.py OUT_DIR

Writes, with random weights in the DCT-Net layer structure (White-box ``unet_generator`` variable
names, TF-slim conventions):

* ``head.pb`` / ``bg.pb``: frozen graphs exported like the official ``cartoon_*_h.pb`` /
  ``cartoon_*_bg.pb`` (placeholder ``input_image`` HxWx3 BGR in [0, 255], ``/127.5 - 1``, U-Net,
  guided filter, clip, ``(x + 1) * 127.5``, uint8 ``output_image``);
* ``ckpt/model-0.{index,data-00000-of-00001}``: a TF1 checkpoint of the head weights that also
  holds a discriminator and Adam slots, as a training checkpoint does;
* ``head_f32.tflite``: the head network (U-Net + guided filter, [-1, 1] in and out, fixed
  1x64x64x3 input) converted by TFLite's own converter with no optimisation, i.e. float32, with
  ``tflite_input`` / ``tflite_output``: an input and the TFLite interpreter's output for it;
* ``cases.npz``: for each test size, the [-1, 1] network input (padded to a multiple of 4 by edge
  replication) and TensorFlow's float guided-filter output for both graphs.

The script imports only TensorFlow and NumPy, never portrait_stylize.
"""

import json
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1
tf1.disable_eager_execution()

SIZES = [(64, 64), (96, 160), (75, 53)]  # square, non-square, odd (padded to 76 x 56)
EPS = {"head": 5e-3, "bg": 1e-2}


def conv(x, cout, k, stride, name, rng):
    cin = x.get_shape().as_list()[-1]
    with tf1.variable_scope(name):
        std = np.sqrt(2.0 / (k * k * cin))
        w = tf1.get_variable("weights", initializer=rng.normal(0, std, (k, k, cin, cout)).astype(np.float32))
        b = tf1.get_variable("biases", initializer=rng.normal(0, 0.05, (cout,)).astype(np.float32))
    return tf.nn.bias_add(tf.nn.conv2d(x, w, [1, stride, stride, 1], "SAME"), b)


def unet_generator(x, rng, channel=32, num_blocks=4):
    def lrelu(t):
        return tf.nn.leaky_relu(t, alpha=0.2)

    names = iter(["Conv"] + [f"Conv_{i}" for i in range(1, 10)])
    with tf1.variable_scope("generator"):
        x0 = lrelu(conv(x, channel, 7, 1, next(names), rng))
        x1 = lrelu(conv(x0, channel, 3, 2, next(names), rng))
        x1 = lrelu(conv(x1, channel * 2, 3, 1, next(names), rng))
        x2 = lrelu(conv(x1, channel * 2, 3, 2, next(names), rng))
        x2 = lrelu(conv(x2, channel * 4, 3, 1, next(names), rng))
        for i in range(num_blocks):
            with tf1.variable_scope(f"block_{i}"):
                y = lrelu(conv(x2, channel * 4, 3, 1, "conv1", rng))
                x2 = x2 + conv(y, channel * 4, 3, 1, "conv2", rng)
        x2 = lrelu(conv(x2, channel * 2, 3, 1, next(names), rng))
        h1, w1 = tf.shape(x2)[1], tf.shape(x2)[2]
        x3 = tf1.image.resize_bilinear(x2, (h1 * 2, w1 * 2))
        x3 = lrelu(conv(x3 + x1, channel * 2, 3, 1, next(names), rng))
        x3 = lrelu(conv(x3, channel, 3, 1, next(names), rng))
        h2, w2 = tf.shape(x3)[1], tf.shape(x3)[2]
        x4 = tf1.image.resize_bilinear(x3, (h2 * 2, w2 * 2))
        x4 = lrelu(conv(x4 + x0, channel, 3, 1, next(names), rng))
        return conv(x4, 3, 7, 1, next(names), rng)


def box_filter(x, r):
    k = 2 * r + 1
    ch = x.get_shape().as_list()[-1]
    kernel = np.full((k, k, ch, 1), 1.0 / k**2, np.float32)
    return tf.nn.depthwise_conv2d(x, kernel, [1, 1, 1, 1], "SAME")


def guided_filter(x, y, r, eps):
    shape = tf.shape(x)
    n = box_filter(tf.ones((1, shape[1], shape[2], 1), dtype=x.dtype), r)
    mean_x = box_filter(x, r) / n
    mean_y = box_filter(y, r) / n
    cov_xy = box_filter(x * y, r) / n - mean_x * mean_y
    var_x = box_filter(x * x, r) / n - mean_x * mean_x
    a = cov_xy / (var_x + eps)
    b = mean_y - a * mean_x
    return box_filter(a, r) / n * x + box_filter(b, r) / n


def build(part, seed):
    """Graph like the official export; returns (graph, float output tensor, session)."""
    graph = tf1.Graph()
    with graph.as_default():
        image = tf1.placeholder(tf.float32, [None, None, 3], name="input_image")
        x = image[tf.newaxis] / 127.5 - 1.0
        network = unet_generator(x, np.random.default_rng(seed))
        filtered = guided_filter(x, network, r=1, eps=EPS[part])
        out = tf.clip_by_value(filtered[0], -0.999999, 0.999999)
        tf.cast((out + 1.0) * 127.5, tf.uint8, name="output_image")
        if part == "head":  # a training checkpoint also holds a discriminator and optimizer slots
            with tf1.variable_scope("discriminator"):
                conv(x, 32, 3, 2, "Conv", np.random.default_rng(99))
        session = tf1.Session(graph=graph)
        session.run(tf1.global_variables_initializer())
    return graph, filtered, session


def float32_tflite(path: Path) -> dict:
    """The head network with a fixed input shape through TFLite's converter (float32, no
    optimisation); returns an input and the TFLite interpreter's output for it."""
    graph = tf1.Graph()
    with graph.as_default():
        x = tf1.placeholder(tf.float32, [1, 64, 64, 3], name="x")
        network = unet_generator(x, np.random.default_rng(1))  # the head's seed: same weights
        out = tf.identity(guided_filter(x, network, r=1, eps=EPS["head"]), name="y")
        with tf1.Session(graph=graph) as session:
            session.run(tf1.global_variables_initializer())
            path.write_bytes(tf1.lite.TFLiteConverter.from_session(session, [x], [out]).convert())
    interpreter = tf.lite.Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    pixels = np.random.default_rng(7).uniform(-1, 1, (1, 64, 64, 3)).astype(np.float32)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels)
    interpreter.invoke()
    return {"tflite_input": pixels,
            "tflite_output": interpreter.get_tensor(interpreter.get_output_details()[0]["index"])}


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = {}
    for part, seed in (("head", 1), ("bg", 2)):
        graph, filtered, session = build(part, seed)
        with graph.as_default():
            frozen = tf1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), ["output_image"])
            (out_dir / f"{part}.pb").write_bytes(frozen.SerializeToString())
            if part == "head":
                slots = [tf1.Variable(session.run(v) * 0.5, name=v.op.name + "/Adam") for v in tf1.global_variables()]
                session.run(tf1.variables_initializer(slots))
                tf1.train.Saver().save(session, str(out_dir / "ckpt" / "model-0"), write_meta_graph=False)
        for h, w in SIZES:
            rng = np.random.default_rng(h * 1000 + w)
            pixels = rng.integers(0, 256, (h, w, 3)).astype(np.float32)
            padded = np.pad(pixels, ((0, -h % 4), (0, -w % 4), (0, 0)), mode="edge")
            cases[f"{h}x{w}_input"] = padded[None] / 127.5 - 1.0
            cases[f"{h}x{w}_{part}"] = session.run(filtered, {"input_image:0": padded})
    cases.update(float32_tflite(out_dir / "head_f32.tflite"))
    np.savez(out_dir / "cases.npz", **cases)
    (out_dir / "meta.json").write_text(json.dumps({"sizes": SIZES, "eps": EPS, "tensorflow": tf.__version__}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
