/* onnx.h: write an exported float model (struct ofa_model, BN folded) as a
 * standard ONNX file (model.onnx) for other runtimes.
 *
 * The graph (opset 14, IR version 7):
 *   input  "input"  float [N, in_channels, res, res], NCHW, N dynamic,
 *          normalised as the evaluator's input: (pixel / 255 - mean) / std
 *          per channel (the values are in the model's metadata);
 *   output "logits" float [N, num_classes] (before softmax).
 * Layers map to Conv (groups = C for depthwise, weights transposed to OIHW),
 * Relu / HardSwish / HardSigmoid(alpha 1/6, beta 1/2), SE as
 * GlobalAveragePool, 1x1 Conv, Relu, 1x1 Conv, HardSigmoid, Mul; residual Add;
 * GlobalAveragePool, Flatten and Gemm for the classifier.
 *
 * Metadata (ModelProto.metadata_props): ofa.subnet, ofa.device,
 * ofa.supernet_fingerprint, ofa.input_layout, ofa.norm_mean, ofa.norm_std,
 * ofa.class_names (a JSON array; absent when the model has no class names),
 * ofa.num_classes, ofa.resolution; doc_string says the same in a sentence.
 */
#ifndef OFA_EXPORT_ONNX_H
#define OFA_EXPORT_ONNX_H

#include "model.h"
#include "util.h"

/* The ONNX operator set and IR version of the files we write. */
#define OFA_ONNX_OPSET 14
#define OFA_ONNX_IR_VERSION 7

/* Write m's float graph to path atomically (util.h: the previous file is
 * untouched on failure). Int8 data, if any, is not written. Returns 0, or -1
 * with err naming path and what failed (I/O, or a model this graph mapping
 * cannot express). */
int ofa_onnx_write(const char *path, const struct ofa_model *m, struct ofa_error *err);

#endif
