"""Run a frozen DCT-Net-style graph with TensorFlow itself: runs under a Python that has TensorFlow.

    python tests/tf_run_graph.py GRAPH.pb IN.npy OUT.npy

``IN.npy``: float32 ``(H, W, 3)`` BGR in [0, 255], fed to the placeholder ``input_image``;
``OUT.npy``: the graph's ``output_image`` as uint8 ``(H, W, 3)`` BGR, exactly as TensorFlow gives it.
Padding and cropping are the caller's business (the official pipeline pads to a multiple of 16).

The script imports only TensorFlow and NumPy, never portrait_stylize.
"""

import sys

import numpy as np
import tensorflow as tf

tf1 = tf.compat.v1


def run(graph_path: str, image: np.ndarray) -> np.ndarray:
    graph_def = tf1.GraphDef()
    with open(graph_path, "rb") as fh:
        graph_def.ParseFromString(fh.read())
    graph = tf1.Graph()
    with graph.as_default():
        tf1.import_graph_def(graph_def, name="")
    with tf1.Session(graph=graph) as session:
        out = session.run("output_image:0", {"input_image:0": image})
    return np.asarray(out, dtype=np.uint8)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    graph_path, in_path, out_path = argv
    image = np.load(in_path).astype(np.float32)
    if image.ndim != 3 or image.shape[-1] != 3:
        print(f"{in_path}: expected (H, W, 3), got {image.shape}", file=sys.stderr)
        return 2
    np.save(out_path, run(graph_path, image))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
