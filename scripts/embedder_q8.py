#!/usr/bin/env python3
"""Rewrite the int8 all-MiniLM-L6-v2 graph so its weights stay 8-bit inside ONNX Runtime.

The published model stores each weight as int8 plus a scale, turned back into float32 by a
Cast and a Mul. ONNX Runtime folds those constants when it loads the model, so every session
holds the weights as float32 (about 90 MB). This rewrite keeps them 8-bit and computes the
same function:

- a MatMul whose weight is int8 [K, N] with one scale per column becomes a MatMulNBits of
  8 bits (blocks of 128 along K, each block of a column with that column's scale, zero point
  128), which ONNX Runtime runs on 8-bit weights (accuracy_level 4: int8 activations);
- a Gather from an int8 table with one scale per row (the word and position embeddings)
  gathers the int8 rows and their scales, then dequantizes only the rows gathered.

Usage: embedder_q8.py SOURCE.onnx DEST.onnx. Deterministic for pinned onnx/numpy versions,
so its output is checked against models.lock like a downloaded file.
"""
import sys

import numpy as np
import onnx
from onnx import helper
from onnx import numpy_helper as nh

BLOCK = 128
ACCURACY_LEVEL = 4


def rewrite(model: onnx.ModelProto) -> onnx.ModelProto:
    graph = model.graph
    init = {t.name: t for t in graph.initializer}
    users = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    replace, drop_nodes, drop_init, new_init = {}, set(), set(), []
    for cast in graph.node:
        if cast.op_type != "Cast" or cast.input[0] not in init:
            continue
        q_name = cast.input[0]
        (mul,) = users[cast.output[0]]
        scale_name = next(i for i in mul.input if i != cast.output[0])
        consumers = users[mul.output[0]]
        q, scale = nh.to_array(init[q_name]), nh.to_array(init[scale_name])
        if q.dtype != np.int8:
            sys.exit(f"embedder_q8: {q_name} is {q.dtype}, expected int8")
        if all(c.op_type == "Gather" and c.input[0] == mul.output[0] for c in consumers):
            if scale.shape != (q.shape[0], 1):
                sys.exit(f"embedder_q8: {scale_name} has shape {scale.shape}, expected one scale per row")
            for c in consumers:
                out, ids = c.output[0], c.input[1]
                replace[id(c)] = [
                    helper.make_node("Gather", [q_name, ids], [out + "_q"], axis=0),
                    helper.make_node("Gather", [scale_name, ids], [out + "_scale"], axis=0),
                    helper.make_node("Cast", [out + "_q"], [out + "_f"], to=onnx.TensorProto.FLOAT),
                    helper.make_node("Mul", [out + "_f", out + "_scale"], [out]),
                ]
        elif all(c.op_type == "MatMul" and c.input[1] == mul.output[0] for c in consumers):
            k, n = q.shape
            if scale.shape != (1, n) or k % BLOCK:
                sys.exit(f"embedder_q8: {q_name} {q.shape} with scale {scale.shape} does not fit 8-bit blocks")
            blocks = k // BLOCK
            packed = (q.astype(np.int16) + 128).astype(np.uint8).T.reshape(n, blocks, BLOCK)
            scales = np.repeat(scale.reshape(n, 1), blocks, axis=1).reshape(-1).astype(np.float32)
            b_name, s_name = mul.output[0] + "_q8", mul.output[0] + "_q8_scales"
            new_init += [nh.from_array(packed, b_name), nh.from_array(scales, s_name)]
            for c in consumers:
                replace[id(c)] = [helper.make_node(
                    "MatMulNBits", [c.input[0], b_name, s_name], list(c.output), domain="com.microsoft",
                    K=k, N=n, bits=8, block_size=BLOCK, accuracy_level=ACCURACY_LEVEL)]
            drop_init |= {q_name, scale_name}
        else:
            sys.exit(f"embedder_q8: {q_name} feeds {[c.op_type for c in consumers]}, which this rewrite does not know")
        drop_nodes |= {id(cast), id(mul)}
    if not replace:
        sys.exit("embedder_q8: no int8 weight found; is this the all-MiniLM-L6-v2 int8 model?")
    nodes = []
    for node in graph.node:
        if id(node) in replace:
            nodes += replace[id(node)]
        elif id(node) not in drop_nodes:
            nodes.append(node)
    kept = [t for t in graph.initializer if t.name not in drop_init]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept + new_init)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    source, dest = sys.argv[1], sys.argv[2]
    onnx.save(rewrite(onnx.load(source)), dest)
