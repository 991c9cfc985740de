"""Remove the layout round trips that per-layer channels-last code leaves in an ONNX graph.

:class:`~portrait_stylize.runtime.winograd.WinogradConv2d` works on pixels as rows of channel
vectors (channels last) and keeps PyTorch's channels-first interface, so each such layer exports
as ``Transpose(0,2,3,1) → … → Transpose(0,3,1,2)``. Between two of them sit only element-wise
operations (leaky ReLU, the residual adds), so the back-and-forth transposes are pure memory
traffic, a measurable share of a TTN pass (docs/performance.md, "AVX2-only machines").

:func:`without_transpose_round_trips` rewrites every ``Transpose(q)`` whose input can be obtained
in the transposed layout without transposing: a ``Transpose(p)`` with ``q ∘ p`` the identity
gives its own input, and an element-wise operation (unary, or binary with both operands obtainable
the same way) is repeated on the obtained operands. The original nodes stay for any other
consumer and are dropped when nothing uses them any more. Every rewrite computes the same values
(element-wise operations commute with a permutation of their operands' axes).
"""

from __future__ import annotations

import itertools

#: Operations that act on each element independently (binary ones on equal-shaped operands here).
UNARY = frozenset({"LeakyRelu", "Relu", "Sigmoid", "Tanh", "Neg", "Abs", "Identity"})
BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min"})


def without_transpose_round_trips(model: bytes) -> bytes:
    """``model`` (a serialized ONNX ``ModelProto``) with the transposes that undo an earlier one
    across element-wise operations removed; the graph computes the same outputs."""
    import onnx
    from onnx import helper

    proto = onnx.load_from_string(model)
    graph = proto.graph
    producer = {output: node for node in graph.node for output in node.output}
    new_nodes: list = []
    fresh = (f"_layout_{i}" for i in itertools.count())
    found: dict[tuple[str, tuple[int, ...]], str | None] = {}

    def perm(node) -> tuple[int, ...]:
        return tuple(next((a.ints for a in node.attribute if a.name == "perm"), ()))

    def transposed(name: str, q: tuple[int, ...]) -> str | None:
        """A tensor equal to ``Transpose(q)(name)`` computed without a transpose, or ``None``."""
        if (name, q) in found:
            return found[name, q]
        found[name, q] = None  # a cycle-free graph never asks again while computing this
        node = producer.get(name)
        result = None
        if (node is not None and node.op_type == "Transpose" and len(perm(node)) == len(q)
                and all(perm(node)[i] == j for j, i in enumerate(q))):
            result = node.input[0]
        elif node is not None and (node.op_type in UNARY or node.op_type in BINARY):
            operands = [transposed(operand, q) for operand in node.input]
            if all(operands) and len(operands) == (1 if node.op_type in UNARY else 2):
                result = next(fresh)
                new_nodes.append(helper.make_node(node.op_type, operands, [result], name=result))
                new_nodes[-1].attribute.extend(node.attribute)
        found[name, q] = result
        return result

    outputs = {o.name for o in graph.output}
    renamed = {}
    for node in list(graph.node):
        if node.op_type == "Transpose" and perm(node) and node.output[0] not in outputs:
            replacement = transposed(node.input[0], perm(node))
            if replacement is not None:
                renamed[node.output[0]] = replacement
    if not renamed:
        return model
    kept = [node for node in graph.node if node.output[0] not in renamed]
    for node in [*kept, *new_nodes]:
        for i, name in enumerate(node.input):
            while name in renamed:
                name = renamed[name]
            node.input[i] = name
    # Order new nodes before their first use, then drop everything no output depends on.
    nodes = _topological([*kept, *new_nodes], {i.name for i in graph.input} | {t.name for t in graph.initializer})
    needed = set(outputs)
    for node in reversed(nodes):
        if any(output in needed for output in node.output):
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(node for node in nodes if any(output in needed for output in node.output))
    stale = [info for info in graph.value_info if info.name not in needed]
    for info in stale:
        graph.value_info.remove(info)
    return proto.SerializeToString()


def _topological(nodes: list, available: set[str]) -> list:
    """``nodes`` ordered so that each comes after the producers of its inputs."""
    producer = {output: node for node in nodes for output in node.output}
    ordered, done = [], set()

    def visit(node) -> None:
        if id(node) in done:
            return
        done.add(id(node))
        for name in node.input:
            if name and name not in available and name in producer:
                visit(producer[name])
        ordered.append(node)

    for node in nodes:
        visit(node)
    return ordered
