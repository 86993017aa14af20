#!/usr/bin/python3
"""check_onnx.py: model.onnx (export/onnx.c) checked by software we did not
write. For several architectures (largest, smallest and random subnets of
three spaces: with and without SE, kernels 3/5/7, grey and RGB input),
tests/onnx_fixture writes a model with random weights and BN statistics, a
batch of random normalised inputs and our own float forward's logits; then

  - onnx.checker.check_model (full check: strict shape inference) accepts it,
    inferred output shape [N, classes], opset 14, no Identity nodes;
  - the metadata says the subnet, normalisation and class names;
  - OpenCV's ONNX importer (cv2.dnn.readNetFromONNX) runs the file as written
    one image at a time, and the same graph with its batch dimension pinned
    to the batch size on the whole batch; both give our top-1 on >= 99% of
    the images and logits within RTOL of the logit scale;
  - onnx.reference (when this python3-onnx has it) gives the same logits;
  - the writer refuses broken models and unwritable paths, leaving no file.

Exits 77 (skipped) when python3-onnx, python3-opencv or python3-numpy is
missing. Run by `make check`; OFA_BUILDDIR names the build tree.
"""
import json
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import cv2
except ImportError as e:
    print(f"SKIP: {e} (Debian: python3-onnx python3-opencv python3-numpy)")
    sys.exit(77)

RTOL = 1e-4     # max |ours - theirs| / max |ours| per model
MIN_TOP1 = 0.99
N = 100

BUILDDIR = os.environ.get("OFA_BUILDDIR") or os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))
SRCDIR = os.environ.get("OFA_SRCDIR") or BUILDDIR
FIXTURE = os.path.join(BUILDDIR, "tests", "onnx_fixture")
RECIPES = os.path.join(SRCDIR, "tests", "fixtures", "recipes")

# (recipe, subnet, seed, overrides): tiny.ini has kernels 3/5, SE and hswish
# in stage 2 (turned off in one case); the default space (mbv3-28) has kernels
# 3/5/7 and SE in stages 2 and 4; rgb100.ini has RGB input, 100 classes, a
# relu stem and 5 stages.
CASES = [
    ("tiny.ini", "largest", 1, []),
    ("tiny.ini", "smallest", 2, []),
    ("tiny.ini", "random", 3, []),
    ("tiny.ini", "random", 4, ["stage2.se=no"]),
    ("default", "largest", 5, []),
    ("default", "smallest", 6, []),
    ("default", "random", 7, []),
    ("default", "r24-d2342-k37.537.7537.53-e36.436.6436.34", 8, []),
    ("rgb100.ini", "random", 9, []),
]

failures = []


def fail(msg):
    print("FAIL:", msg)
    failures.append(msg)


def read_fixture(d):
    meta, classes = {}, []
    with open(os.path.join(d, "fixture.txt"), encoding="utf-8", errors="replace") as f:
        for line in f:
            k, v = line.rstrip("\n").split("=", 1)
            if k == "class":
                classes.append(v)
            else:
                meta[k] = v
    meta["classes_list"] = classes
    return meta


def compare(name, ours, theirs):
    """top-1 agreement and max error relative to the logit scale."""
    if theirs.shape != ours.shape:
        fail(f"{name}: output shape {theirs.shape}, expected {ours.shape}")
        return
    top1 = float(np.mean(ours.argmax(1) == theirs.argmax(1)))
    scale = float(np.abs(ours).max())
    rel = float(np.abs(ours - theirs).max()) / max(scale, 1e-30)
    print(f"  {name}: top-1 agreement {top1:.3f}, max error {rel:.2e} of logit scale {scale:.3g}")
    if top1 < MIN_TOP1:
        fail(f"{name}: top-1 agreement {top1:.3f} < {MIN_TOP1}")
    if not rel <= RTOL:
        fail(f"{name}: max logit error {rel:.2e} of the scale > {RTOL}")


def check_graph(tag, path, meta):
    model = onnx.load(path)
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as e:  # onnx raises several exception types
        fail(f"{tag}: onnx.checker: {e}")
        return None
    opsets = {o.domain: o.version for o in model.opset_import}
    if opsets.get("", opsets.get("ai.onnx")) != 14:
        fail(f"{tag}: opset {opsets}, expected 14")
    ops = {n.op_type for n in model.graph.node}
    if "Identity" in ops:
        fail(f"{tag}: Identity nodes (OpenCV refuses them)")
    se = meta["se"] == "1"
    if se != ("Mul" in ops and "HardSigmoid" in ops):
        fail(f"{tag}: SE in the model: {se}, ops {sorted(ops)}")
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    out = inferred.graph.output[0]
    dims = [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim]
    if out.name != "logits" or dims != ["N", int(meta["classes"])]:
        fail(f"{tag}: output {out.name} {dims}")
    inp = model.graph.input[0]
    dims = [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim]
    C, R = int(meta["channels"]), int(meta["res"])
    if inp.name != "input" or dims != ["N", C, R, R]:
        fail(f"{tag}: input {inp.name} {dims}")
    # every conv weight is NCHW-shaped [Cout, Cin/group, K, K]
    inits = {t.name: t for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Conv":
            w = inits[n.input[1]]
            k = [a.ints for a in n.attribute if a.name == "kernel_shape"]
            if not k or list(w.dims[2:]) != list(k[0]):
                fail(f"{tag}: {n.name}: weight {list(w.dims)}, kernel_shape {k}")
    props = {p.key: p.value for p in model.metadata_props}
    want = {
        "ofa.subnet": meta["subnet"],
        "ofa.device": "test-device",
        "ofa.supernet_fingerprint": meta["fingerprint"],
        "ofa.num_classes": meta["classes"],
        "ofa.resolution": meta["res"],
    }
    for k, v in want.items():
        if props.get(k) != v:
            fail(f"{tag}: metadata {k} = {props.get(k)!r}, expected {v!r}")
    for k in ("norm_mean", "norm_std"):
        got = [float(x) for x in props.get("ofa." + k, "").split(",")]
        exp = [float(x) for x in meta[k].split(",")]
        if got != exp:
            fail(f"{tag}: metadata ofa.{k} = {got}, expected {exp}")
    try:
        names = json.loads(props.get("ofa.class_names", ""))
    except ValueError as e:
        fail(f"{tag}: ofa.class_names is not JSON: {e}")
        names = None
    if names is not None and names != meta["classes_list"]:
        fail(f"{tag}: class names {names[:6]}..., expected {meta['classes_list'][:6]}...")
    if meta["subnet"] not in model.doc_string or "norm_mean" not in model.doc_string:
        fail(f"{tag}: doc_string {model.doc_string!r}")
    return model


def run_opencv(path, x):
    net = cv2.dnn.readNetFromONNX(path)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.setInput(x)
    return net.forward().reshape(x.shape[0], -1)


def pinned_batch(model, n, path):
    """The same graph with its batch dimension fixed to n (onnx's API)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.shape.dim[0].dim_value = n
    onnx.save(m, path)


def main():
    # One thread each: spinning thread pools cost more than they bring on
    # these small models, and the test stays light on a shared machine.
    cv2.setNumThreads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    if not os.access(FIXTURE, os.X_OK):
        print(f"FAIL: {FIXTURE} is not built")
        return 1
    print(f"onnx {onnx.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}")
    reference = None
    try:
        from onnx.reference import ReferenceEvaluator as reference
    except ImportError:
        print("onnx.reference not available in this onnx: skipping the reference evaluator")
    kernels_seen, se_seen = set(), set()
    with tempfile.TemporaryDirectory(prefix="check_onnx.") as tmp:
        for i, (recipe, subnet, seed, overrides) in enumerate(CASES):
            d = os.path.join(tmp, str(i))
            os.mkdir(d)
            rpath = recipe if recipe == "default" else os.path.join(RECIPES, recipe)
            r = subprocess.run([FIXTURE, rpath, subnet, str(N), str(seed), d] + overrides,
                               capture_output=True, text=True)
            if r.returncode != 0:
                fail(f"onnx_fixture {recipe} {subnet}: exit {r.returncode}: {r.stderr.strip()}")
                continue
            meta = read_fixture(d)
            tag = " ".join([recipe, meta["subnet"]] + overrides)
            print(f"{tag}: {meta['layers']} layers, kernels {meta['kernels']}, SE {meta['se']}")
            kernels_seen |= set(meta["kernels"].split(","))
            se_seen.add(meta["se"])
            path = os.path.join(d, "model.onnx")
            model = check_graph(tag, path, meta)
            if model is None:
                continue
            C, R, K = int(meta["channels"]), int(meta["res"]), int(meta["classes"])
            x = np.fromfile(os.path.join(d, "input.f32"), dtype="<f4")
            ours = np.fromfile(os.path.join(d, "logits.f32"), dtype="<f4").reshape(N, K)
            # our inputs are NHWC; ONNX's are NCHW
            x = np.ascontiguousarray(x.reshape(N, R, R, C).transpose(0, 3, 1, 2))
            try:
                net = cv2.dnn.readNetFromONNX(path)
                per_image = []
                for j in range(N):
                    net.setInput(x[j:j + 1])
                    per_image.append(net.forward().reshape(-1))
                compare("OpenCV, one image at a time", ours, np.array(per_image))
            except cv2.error as e:
                fail(f"{tag}: OpenCV: {e}")
            try:
                pinned = os.path.join(d, "pinned.onnx")
                pinned_batch(model, N, pinned)
                compare(f"OpenCV, batch {N}", ours, run_opencv(pinned, x))
            except cv2.error as e:
                fail(f"{tag}: OpenCV (batch {N}): {e}")
            if reference is not None:
                got = reference(model).run(None, {"input": x[:8]})[0]
                compare("onnx.reference", ours[:8], got)
        for k in ("3", "5", "7"):
            if k not in kernels_seen:
                fail(f"no case has kernel size {k}")
        if se_seen != {"0", "1"}:
            fail(f"cases with and without SE needed, SE flags seen: {sorted(se_seen)}")

        d = os.path.join(tmp, "refusals")
        os.mkdir(d)
        r = subprocess.run([FIXTURE, "--refusals", d], capture_output=True, text=True)
        print(r.stdout.strip())
        if r.returncode != 0:
            fail(f"onnx_fixture --refusals: exit {r.returncode}: {r.stderr.strip()}")
        elif os.listdir(d) != ["model.onnx"]:
            fail(f"refusals left {os.listdir(d)}")
        else:
            check = onnx.load(os.path.join(d, "model.onnx"))
            onnx.checker.check_model(check)
    if failures:
        print(f"{len(failures)} failure(s)")
        return 1
    print("all ONNX checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
