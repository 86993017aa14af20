#!/usr/bin/python3
"""peer_torch.py: the PyTorch peer of bench/bench_train_step.

Builds in PyTorch (Debian's python3-torch; run it with /usr/bin/python3) the
same networks as the reference subnets of our supernet "mbv3-28", with random
weights, and times the same work as bench_train_step:

  train     one training step of the subnet: forward, label-smoothed (0.1)
            cross-entropy, backward, SGD update (Nesterov momentum 0.9, weight
            decay 5e-5 on conv/linear weights only, as ours); img/s.
  infer     fp32 inference, batch N (eval mode: BN running statistics); img/s.
  b1        fp32 inference latency of one image, ms (16 images a repeat).
  sandwich  one sandwich step of the weight-shared supernet: the largest
            subnet on the labels (dropout 0.1), then the smallest and two
            random subnets on the largest's soft outputs (distillation at
            T=1, inputs resized bilinearly from 28x28), one SGD update of all
            the supernet's weights; img/s (N / step time).

The subnet networks (train, infer, b1) are plain standalone modules
(nn.Conv2d, nn.BatchNorm2d, ...) of exactly the subnet's shapes. The sandwich
step uses a weight-shared elastic supernet written as OFA's PyTorch code
does: every tensor at its largest shape, a subnet takes the first channels of
each weight and BN, the centre of each 7x7 depthwise kernel through OFA's
learned 7->5->3 kernel transformation matrices (as ours), the first D blocks
of each stage. `--check` verifies that it computes the same function as the
standalone module for each reference subnet (weights copied across).

Matching our network (lib/space.c, lib/supernet.c): 1-channel input at the
subnet's resolution r (bench_train_step's training step feeds its random
28x28 buffer read as r x r images; random values either way); stem conv3x3
stride 1, 16 channels, BN, hswish; first block dw3x3, BN, relu, pw 16->16,
BN, residual; 4 stages of MBConv (expand 1x1 + BN + act, depthwise KxK
(padding K//2) + BN + act, SE in stages 2 and 4 (avgpool, 1x1 conv with bias
to make_divisible(mid/4, 8), relu, 1x1 conv with bias, hsigmoid, scale),
project 1x1 + BN, residual when stride 1 and widths equal); widths 24/40/64/96,
strides 2/2/2/1, relu in stage 1 and hswish after; head 1x1 conv to 384, BN,
hswish, global average pool, (dropout), linear to 10. Convs followed by BN
have no bias. The MACs (conv, SE and linear multiply-adds, counted with
forward hooks) and the trainable parameters (weights, biases, BN gamma and
beta) of the standalone modules equal ofa_subnet_macs() and
ofa_subnet_params() exactly: largest 30,456,736 MACs and 1,639,234
parameters, medium 8,674,848 and 638,482, smallest 3,276,856 and 271,914
(`--check` prints them; bench/compare.py checks the equality against
bench_train_step --tsv in every run).

Configurations ("variants") timed; bench/compare.py reports the peer's
default and the best of all:
  default            eager, NCHW, torch.no_grad() for inference
  channels_last      eager, channels_last memory format (torch.inference_mode)
  jit                torch.jit.trace + torch.jit.freeze, NCHW (inference only)
  jit_channels_last  the same on the channels_last model and input
  jit_optimized      torch.jit.optimize_for_inference of the frozen NCHW module
Before timing a variant, its logits are compared with the eager NCHW module's
at the batch sizes timed; a variant more than MAX_REL_DIFF off is reported and
not timed (python3-torch 1.13.1's optimize_for_inference is, by far, on the
smallest subnet, whose widths 72 and 120 are not multiples of 16). Weights are
initialised as ours (ofa_supernet_init: He-normal convs, classifier N(0, 0.01),
BN identity, last BN gamma of residual blocks 0), so that the activations (and
any denormal slow-downs) are alike.
Warm-up before timing: 2 calls of a training step, 3 of an inference pass
(TorchScript's profiling executor optimises a graph after its first calls);
the sandwich step warms up on the subnets of every timed step (steady state
of a long run, where oneDNN's primitive cache holds the shapes) plus the
warm-up step. Timings are wall-clock, medians of --repeats (upper median for
even counts, as bench_train_step).

Usage:
  /usr/bin/python3 bench/peer_torch.py --subnet largest --threads 1 [--batch 128]
      [--repeats 3] [--variants default,channels_last,...] [--tsv]
  /usr/bin/python3 bench/peer_torch.py --sandwich --threads 2 [--batch 128]
      [--sandwich-subnets T1,T2,T3,T4,...]   (two random subnets a step, the
      warm-up step first: `bench/bench_train_step --list-sandwich` prints ours;
      without it, random subnets are drawn here with a fixed seed)
  /usr/bin/python3 bench/peer_torch.py --check [--tsv]
--subnet also takes a canonical subnet text (r24-d3333-k555.555.555.555-e444.444.444.444).
Standard library and torch only.
"""
import argparse
import copy
import random
import sys
import time
import warnings

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:
    sys.exit("peer_torch.py: needs PyTorch (Debian: apt-get install python3-torch; "
             "run it with /usr/bin/python3)")

# ---- The reference space "mbv3-28" (ofa_space_default in lib/space.c) ----

IN_CHANNELS = 1
NUM_CLASSES = 10
STEM_WIDTH = 16
FIRST_WIDTH = 16
# (width, stride of the first block, activation, squeeze-excite)
STAGES = [(24, 2, "relu", False), (40, 2, "hswish", True),
          (64, 2, "hswish", False), (96, 1, "hswish", True)]
DEPTHS = (2, 3, 4)
EXPANDS = (3, 4, 6)
KERNELS = (3, 5, 7)
RESOLUTIONS = (20, 24, 28)
HEAD_WIDTH = 384
DROPOUT = 0.1
SE_REDUCTION = 4
BN_MOMENTUM = 0.1
BN_EPS = 1e-5
INPUT_RES = 28  # the benchmark's input buffer (bench_train_step)

REF = {  # bench_train_step.c: ref_text[]
    "largest": "r28-d4444-k7777.7777.7777.7777-e6666.6666.6666.6666",
    "medium": "r24-d3333-k555.555.555.555-e444.444.444.444",
    "smallest": "r20-d2222-k33.33.33.33-e33.33.33.33",
}

TRAIN_VARIANTS = ("default", "channels_last")
INFER_VARIANTS = ("default", "channels_last", "jit", "jit_channels_last", "jit_optimized")
# A variant whose logits differ more than this from the eager module's, relative
# to the largest logit, computes something else and is not timed (PyTorch
# 1.13's optimize_for_inference does, on widths that are not multiples of 16).
MAX_REL_DIFF = 1e-4
WARMUP_TRAIN = 2
WARMUP_INFER = 3
B1_IMAGES = 16  # batch-1 images a timed repeat (as bench_train_step)


def make_divisible(v, divisor=8):
    """ofa_make_divisible: nearest multiple, at least divisor, >= 90% of v."""
    nv = int(v + divisor / 2.0) // divisor * divisor
    nv = max(nv, divisor)
    if nv < 0.9 * v:
        nv += divisor
    return nv


class Subnet:
    """A parsed canonical subnet text r<R>-d<D..>-k<k..>.<..>-e<e..>.<..>."""

    def __init__(self, text):
        self.text = text
        form = ValueError("subnet '%s': expected r<res>-d<depths>-k<kernels>-e<expands>" % text)
        parts = text.split("-")
        if len(parts) != 4 or [p[:1] for p in parts] != ["r", "d", "k", "e"]:
            raise form
        r, d, k, e = (p[1:] for p in parts)
        try:
            self.res = int(r)
            self.depth = [int(c) for c in d]
            self.kernel = [[int(c) for c in g] for g in k.split(".")]
            self.expand = [[int(c) for c in g] for g in e.split(".")]
        except ValueError:
            raise form from None
        ok = (self.res in RESOLUTIONS and len(self.depth) == len(STAGES)
              and len(self.kernel) == len(STAGES) and len(self.expand) == len(STAGES)
              and all(dd in DEPTHS for dd in self.depth)
              and all(len(self.kernel[s]) == self.depth[s] == len(self.expand[s])
                      for s in range(len(STAGES)))
              and all(kk in KERNELS for g in self.kernel for kk in g)
              and all(ee in EXPANDS for g in self.expand for ee in g))
        if not ok:
            raise ValueError("subnet '%s' is not in the space mbv3-28" % text)


def sample_subnet(rng):
    """A uniform random subnet (our ofa_subnet_sample draws differently)."""
    res = rng.choice(RESOLUTIONS)
    depth = [rng.choice(DEPTHS) for _ in STAGES]
    k = [''.join(str(rng.choice(KERNELS)) for _ in range(d)) for d in depth]
    e = [''.join(str(rng.choice(EXPANDS)) for _ in range(d)) for d in depth]
    return Subnet("r%d-d%s-k%s-e%s" % (res, ''.join(map(str, depth)), '.'.join(k), '.'.join(e)))


def act_module(name):
    return nn.ReLU(inplace=True) if name == "relu" else nn.Hardswish(inplace=True)


def act_fn(name, x):
    return F.relu(x, inplace=True) if name == "relu" else F.hardswish(x, inplace=True)


def bn(c):
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


def init_like_ours(module):
    """ofa_supernet_init's initialisation: He-normal convs (fan-in Cin/groups*k*k),
    zero conv biases, classifier N(0, 0.01) with zero bias, BN gamma 1, beta 0,
    mean 0, var 1 (the caller zeroes the last gamma of residual blocks)."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.in_channels // m.groups * m.kernel_size[0] * m.kernel_size[1]
                m.weight.normal_(0.0, (2.0 / fan_in) ** 0.5)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, 0.01)
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()


def calibrate_bn(model, x):
    """Set every BN's running statistics to those of the batch x (so that an
    eval-mode forward depends on the input, for comparisons)."""
    saved = {}
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            saved[m] = m.momentum
            m.momentum = None  # cumulative average: one batch gives its statistics
            m.reset_running_stats()
    was_training = model.training
    model.train()
    with torch.no_grad():
        model(x)
    model.train(was_training)
    for m, mom in saved.items():
        m.momentum = mom


# ---- The standalone network of one subnet ----------------------------------

class SE(nn.Module):
    def __init__(self, mid):
        super().__init__()
        r = make_divisible(mid / SE_REDUCTION, 8)
        self.fc1 = nn.Conv2d(mid, r, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(r, mid, 1)
        self.gate = nn.Hardsigmoid(inplace=True)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.relu(self.fc1(s))))


class MBConv(nn.Module):
    def __init__(self, cin, cout, expand, k, stride, act, se):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Conv2d(cin, mid, 1, bias=False)
        self.expand_bn = bn(mid)
        self.dw = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        self.dw_bn = bn(mid)
        self.act = act_module(act)
        self.se = SE(mid) if se else None
        self.project = nn.Conv2d(mid, cout, 1, bias=False)
        self.project_bn = bn(cout)
        self.residual = stride == 1 and cin == cout
        init_like_ours(self)
        with torch.no_grad():
            # ours draws every depthwise kernel at 7x7 (fan-in 49) and crops it
            self.dw.weight.normal_(0.0, (2.0 / 49) ** 0.5)
            if self.residual:
                self.project_bn.weight.zero_()

    def forward(self, x):
        y = self.act(self.expand_bn(self.expand(x)))
        y = self.act(self.dw_bn(self.dw(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.project_bn(self.project(y))
        return x + y if self.residual else y


class SubnetNet(nn.Module):
    """The subnet as a plain network of its exact shapes."""

    def __init__(self, sub):
        super().__init__()
        self.stem = nn.Conv2d(IN_CHANNELS, STEM_WIDTH, 3, 1, 1, bias=False)
        self.stem_bn = bn(STEM_WIDTH)
        self.stem_act = nn.Hardswish(inplace=True)
        self.first_dw = nn.Conv2d(STEM_WIDTH, STEM_WIDTH, 3, 1, 1, groups=STEM_WIDTH, bias=False)
        self.first_dw_bn = bn(STEM_WIDTH)
        self.first_act = nn.ReLU(inplace=True)
        self.first_pw = nn.Conv2d(STEM_WIDTH, FIRST_WIDTH, 1, bias=False)
        self.first_pw_bn = bn(FIRST_WIDTH)
        self.first_residual = STEM_WIDTH == FIRST_WIDTH
        blocks, cin = [], FIRST_WIDTH
        for s, (width, stride, act, se) in enumerate(STAGES):
            for b in range(sub.depth[s]):
                blocks.append(MBConv(cin, width, sub.expand[s][b], sub.kernel[s][b],
                                     stride if b == 0 else 1, act, se))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, HEAD_WIDTH, 1, bias=False)
        self.head_bn = bn(HEAD_WIDTH)
        self.head_act = nn.Hardswish(inplace=True)
        self.fc = nn.Linear(HEAD_WIDTH, NUM_CLASSES)
        for m in (self.stem, self.first_dw, self.first_pw, self.head, self.fc):
            init_like_ours(m)
        with torch.no_grad():
            if self.first_residual:
                self.first_pw_bn.weight.zero_()

    def forward(self, x):
        x = self.stem_act(self.stem_bn(self.stem(x)))
        y = self.first_act(self.first_dw_bn(self.first_dw(x)))
        y = self.first_pw_bn(self.first_pw(y))
        x = x + y if self.first_residual else y
        x = self.blocks(x)
        x = self.head_act(self.head_bn(self.head(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def count_macs(model, res):
    """Multiply-adds of convs and linear layers (SE included) for one image."""
    total = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1]
        total[0] += out[0].numel() * (m.in_channels // m.groups) * k  # out[0]: one image

    def linear_hook(m, inp, out):
        total[0] += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook) for m in model.modules()
             if isinstance(m, nn.Conv2d)]
    hooks += [m.register_forward_hook(linear_hook) for m in model.modules()
              if isinstance(m, nn.Linear)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, IN_CHANNELS, res, res))
    model.train(was_training)
    for h in hooks:
        h.remove()
    return total[0]


def count_params(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---- The weight-shared elastic supernet (OFA's dynamic modules) ------------

def dyn_bn(m, x):
    c = x.shape[1]
    return F.batch_norm(x, m.running_mean[:c], m.running_var[:c], m.weight[:c], m.bias[:c],
                        m.training, m.momentum, m.eps)


def he_normal(*shape, fan_in):
    return nn.Parameter(torch.randn(*shape) * (2.0 / fan_in) ** 0.5)


class DynBlock(nn.Module):
    def __init__(self, cin, cout, stride, act, se):
        super().__init__()
        mid = cin * max(EXPANDS)
        kmax = max(KERNELS)
        self.cin, self.cout, self.stride, self.act, self.has_se = cin, cout, stride, act, se
        self.expand_w = he_normal(mid, cin, 1, 1, fan_in=cin)
        self.expand_bn = bn(mid)
        self.dw_w = he_normal(mid, 1, kmax, kmax, fan_in=kmax * kmax)
        # OFA's kernel transformation: 7->5 and 5->3, identity at start
        self.m75 = nn.Parameter(torch.eye(25))
        self.m53 = nn.Parameter(torch.eye(9))
        self.dw_bn = bn(mid)
        if se:
            r = make_divisible(mid / SE_REDUCTION, 8)
            self.se_w1 = he_normal(r, mid, 1, 1, fan_in=mid)
            self.se_b1 = nn.Parameter(torch.zeros(r))
            self.se_w2 = he_normal(mid, r, 1, 1, fan_in=r)
            self.se_b2 = nn.Parameter(torch.zeros(mid))
        self.project_w = he_normal(cout, mid, 1, 1, fan_in=mid)
        self.project_bn = bn(cout)
        self.residual = stride == 1 and cin == cout
        with torch.no_grad():
            if self.residual:
                self.project_bn.weight.zero_()

    def kernel(self, mid, k):
        """The active [mid, 1, k, k] depthwise kernel (ops.h: ofa_dwkernel_forward)."""
        w = self.dw_w[:mid]
        if k == 7:
            return w
        w5 = F.linear(w[:, :, 1:6, 1:6].reshape(mid, 25), self.m75).reshape(mid, 1, 5, 5)
        if k == 5:
            return w5
        return F.linear(w5[:, :, 1:4, 1:4].reshape(mid, 9), self.m53).reshape(mid, 1, 3, 3)

    def forward(self, x, expand, k):
        mid = self.cin * expand
        y = act_fn(self.act, dyn_bn(self.expand_bn, F.conv2d(x, self.expand_w[:mid])))
        y = F.conv2d(y, self.kernel(mid, k), None, self.stride, k // 2, 1, mid)
        y = act_fn(self.act, dyn_bn(self.dw_bn, y))
        if self.has_se:
            r = make_divisible(mid / SE_REDUCTION, 8)
            s = F.adaptive_avg_pool2d(y, 1)
            s = F.relu(F.conv2d(s, self.se_w1[:r, :mid], self.se_b1[:r]), inplace=True)
            y = y * F.hardsigmoid(F.conv2d(s, self.se_w2[:mid, :r], self.se_b2[:mid]),
                                  inplace=True)
        y = dyn_bn(self.project_bn, F.conv2d(y, self.project_w[:, :mid]))
        return x + y if self.residual else y


class Supernet(nn.Module):
    """Every subnet of the space in one set of weights (forward(x, sub))."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(IN_CHANNELS, STEM_WIDTH, 3, 1, 1, bias=False)
        self.stem_bn = bn(STEM_WIDTH)
        self.first_dw = nn.Conv2d(STEM_WIDTH, STEM_WIDTH, 3, 1, 1, groups=STEM_WIDTH, bias=False)
        self.first_dw_bn = bn(STEM_WIDTH)
        self.first_pw = nn.Conv2d(STEM_WIDTH, FIRST_WIDTH, 1, bias=False)
        self.first_pw_bn = bn(FIRST_WIDTH)
        self.stages = nn.ModuleList()
        cin = FIRST_WIDTH
        for width, stride, act, se in STAGES:
            self.stages.append(nn.ModuleList(
                DynBlock(cin if b == 0 else width, width, stride if b == 0 else 1, act, se)
                for b in range(max(DEPTHS))))
            cin = width
        self.head = nn.Conv2d(cin, HEAD_WIDTH, 1, bias=False)
        self.head_bn = bn(HEAD_WIDTH)
        self.fc = nn.Linear(HEAD_WIDTH, NUM_CLASSES)
        for m in (self.stem, self.first_dw, self.first_pw, self.head, self.fc):
            init_like_ours(m)
        with torch.no_grad():
            self.first_pw_bn.weight.zero_()

    def forward(self, x, sub, dropout=0.0):
        x = F.hardswish(self.stem_bn(self.stem(x)), inplace=True)
        y = F.relu(self.first_dw_bn(self.first_dw(x)), inplace=True)
        x = x + self.first_pw_bn(self.first_pw(y))
        for s, blocks in enumerate(self.stages):
            for b in range(sub.depth[s]):
                x = blocks[b](x, sub.expand[s][b], sub.kernel[s][b])
        x = F.hardswish(self.head_bn(self.head(x)), inplace=True)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        if dropout > 0:
            x = F.dropout(x, dropout, self.training)
        return self.fc(x)

    @torch.no_grad()
    def extract(self, sub):
        """A SubnetNet holding this supernet's weights for sub."""
        net = SubnetNet(sub)

        def copy_bn(dst, src):
            c = dst.num_features
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(dst, name).copy_(getattr(src, name)[:c])

        for name in ("stem", "first_dw", "first_pw", "head", "fc"):
            for p in ("weight", "bias"):
                if getattr(getattr(self, name), p) is not None:
                    getattr(getattr(net, name), p).copy_(getattr(getattr(self, name), p))
        for name in ("stem_bn", "first_dw_bn", "first_pw_bn", "head_bn"):
            copy_bn(getattr(net, name), getattr(self, name))
        i = 0
        for s, blocks in enumerate(self.stages):
            for b in range(sub.depth[s]):
                src, dst = blocks[b], net.blocks[i]
                i += 1
                mid = dst.expand.out_channels
                dst.expand.weight.copy_(src.expand_w[:mid])
                copy_bn(dst.expand_bn, src.expand_bn)
                dst.dw.weight.copy_(src.kernel(mid, dst.dw.kernel_size[0]))
                copy_bn(dst.dw_bn, src.dw_bn)
                if dst.se is not None:
                    r = dst.se.fc1.out_channels
                    dst.se.fc1.weight.copy_(src.se_w1[:r, :mid])
                    dst.se.fc1.bias.copy_(src.se_b1[:r])
                    dst.se.fc2.weight.copy_(src.se_w2[:mid, :r])
                    dst.se.fc2.bias.copy_(src.se_b2[:mid])
                dst.project.weight.copy_(src.project_w[:, :mid])
                copy_bn(dst.project_bn, src.project_bn)
        return net


# ---- Timing ------------------------------------------------------------------

def median_time(fn, repeats, warmup, inner=1):
    """Median wall seconds of one call (upper median, as bench_train_step)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        ts.append((time.perf_counter() - t0) / inner)
    return sorted(ts)[repeats // 2]


def sgd(model):
    decay = [p for n, p in model.named_parameters()
             if p.ndim > 1 and not n.endswith(("m75", "m53"))]
    other = [p for n, p in model.named_parameters()
             if not (p.ndim > 1 and not n.endswith(("m75", "m53")))]
    return torch.optim.SGD([{"params": decay, "weight_decay": 5e-5},
                            {"params": other, "weight_decay": 0.0}],
                           lr=0.01, momentum=0.9, nesterov=True)


def to_format(model, x, channels_last):
    if channels_last:
        return (model.to(memory_format=torch.channels_last),
                x.contiguous(memory_format=torch.channels_last))
    return model, x


def time_train(model, sub, batch, repeats, variant):
    model, x = to_format(copy.deepcopy(model), torch.randn(batch, IN_CHANNELS, sub.res, sub.res),
                         variant == "channels_last")
    y = torch.randint(0, NUM_CLASSES, (batch,))
    model.train()
    opt = sgd(model)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        opt.zero_grad()
        crit(model(x), y).backward()
        opt.step()

    return batch / median_time(step, repeats, WARMUP_TRAIN)


def inference_module(model, example, variant):
    """(callable, input, context manager factory) running a copy of model in
    one inference variant."""
    model = copy.deepcopy(model).eval()
    model, x = to_format(model, example, variant in ("channels_last", "jit_channels_last"))
    if variant == "default":
        return model, x, torch.no_grad
    if variant == "channels_last":
        return model, x, torch.inference_mode
    with torch.no_grad():
        frozen = torch.jit.freeze(torch.jit.trace(model, x))
        if variant == "jit_optimized":
            frozen = torch.jit.optimize_for_inference(frozen)
    return frozen, x, torch.no_grad


def variant_error(model, sub, variant, batches=(8,)):
    """Largest difference of the variant's logits from the eager NCHW module's
    on batches of random images, relative to the largest logit (BN statistics
    set from random images first, so that the logits depend on the input)."""
    model = copy.deepcopy(model)
    calibrate_bn(model, torch.randn(8, IN_CHANNELS, sub.res, sub.res))
    model.eval()
    err = 0.0
    for n in batches:
        x = torch.randn(n, IN_CHANNELS, sub.res, sub.res)
        with torch.no_grad():
            ref = model(x)
        fn, xv, ctx = inference_module(model, x, variant)
        with ctx():
            err = max(err, rel_diff(fn(xv), ref))
    return err


def rel_diff(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-12)).item()


def time_infer(model, sub, batch, repeats, variant):
    """(img/s at batch, ms of one image), each on a module made for that batch."""
    out = []
    for n, inner in ((batch, 1), (1, B1_IMAGES)):
        fn, x, ctx = inference_module(model, torch.randn(n, IN_CHANNELS, sub.res, sub.res),
                                      variant)
        with ctx():
            out.append(median_time(lambda: fn(x), repeats, WARMUP_INFER, inner))
    return batch / out[0], 1e3 * out[1]


def time_sandwich(batch, repeats, variant, pairs):
    """pairs: [warm-up pair, timed pair 1, ..]: two random Subnets a step."""
    largest, smallest = Subnet(REF["largest"]), Subnet(REF["smallest"])
    model, x = to_format(Supernet(), torch.randn(batch, IN_CHANNELS, INPUT_RES, INPUT_RES),
                         variant == "channels_last")
    y = torch.randint(0, NUM_CLASSES, (batch,))
    model.train()
    opt = sgd(model)
    crit = nn.CrossEntropyLoss(label_smoothing=0.1)

    def step(pair):
        opt.zero_grad()
        logits = model(x, largest, DROPOUT)
        crit(logits, y).backward()
        soft = F.softmax(logits.detach(), dim=1)  # distillation at T = 1
        for sub in (smallest,) + tuple(pair):
            xr = F.interpolate(x, size=(sub.res, sub.res), mode="bilinear", align_corners=False)
            (-(soft * F.log_softmax(model(xr, sub), dim=1)).sum(1).mean()).backward()
        opt.step()

    for pair in pairs:  # the warm-up step, then once on every timed step's shapes
        step(pair)
    for _ in range(WARMUP_TRAIN - 1):
        step(pairs[0])
    ts = []
    for pair in pairs[1:1 + repeats]:
        t0 = time.perf_counter()
        step(pair)
        ts.append(time.perf_counter() - t0)
    return batch / sorted(ts)[len(ts) // 2]


# ---- Check and main ----------------------------------------------------------

def check(tsv):
    """MACs/params of the reference subnets; the supernet computes what the
    standalone module computes, and so does every inference variant."""
    torch.manual_seed(1)
    sup = Supernet()
    with torch.no_grad():  # give BN statistics and SE/kernel matrices non-trivial values
        for m in sup.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
        for n, p in sup.named_parameters():
            if n.endswith(("m75", "m53")):
                p.add_(0.05 * torch.randn_like(p))
    sup.eval()
    ok = True
    rows = []
    for name, text in REF.items():
        sub = Subnet(text)
        net = sup.extract(sub).eval()
        x = torch.randn(2, IN_CHANNELS, sub.res, sub.res)
        with torch.no_grad():
            err = rel_diff(sup(x, sub), net(x))
        ok = ok and err < MAX_REL_DIFF
        verr = [variant_error(net, sub, v) for v in INFER_VARIANTS[1:]]
        rows.append((name, count_macs(net, sub.res), count_params(net), err, verr))
    if tsv:
        print("subnet\tmacs\tparams\tsupernet_vs_standalone\t"
              + "\t".join(v + "_vs_default" for v in INFER_VARIANTS[1:]))
        for name, macs, params, err, verr in rows:
            print("%s\t%d\t%d\t%.2e\t%s" % (name, macs, params, err,
                                            "\t".join("%.2e" % e for e in verr)))
    else:
        print("max rel. diff of the logits from the standalone module's: the supernet; "
              + ", ".join(INFER_VARIANTS[1:]))
        for name, macs, params, err, verr in rows:
            print("%-9s %9d MACs (%5.2f M) %8d params (%.3f M); %.1e; %s"
                  % (name, macs, macs / 1e6, params, params / 1e6, err,
                     ", ".join("%.1e" % e for e in verr)))
    if any(e >= MAX_REL_DIFF for row in rows for e in row[4]):
        print("%svariants above %.0e give wrong results: timing runs skip them"
              % ("# " if tsv else "", MAX_REL_DIFF))
    if not ok:
        print("peer_torch.py: the weight-shared supernet does not compute the standalone "
              "subnet's function", file=sys.stderr)
    return 0 if ok else 1


def describe_torch():
    return "PyTorch %s, oneDNN %s, %s, %d threads" % (
        torch.__version__, "on" if torch.backends.mkldnn.is_available() else "off",
        "OpenMP" if "OpenMP" in torch.__config__.parallel_info() else "native threads",
        torch.get_num_threads())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument("--subnet", help="largest, medium, smallest or a canonical subnet text")
    what.add_argument("--sandwich", action="store_true", help="time the sandwich step")
    what.add_argument("--check", action="store_true",
                      help="print MACs/params, check the supernet against the standalone")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--variants", default=None,
                    help="comma-separated subset of %s" % ",".join(INFER_VARIANTS))
    ap.add_argument("--sandwich-subnets", default=None,
                    help="comma-separated subnet texts, two a step, the warm-up step first")
    ap.add_argument("--tsv", action="store_true", help="machine-readable output")
    a = ap.parse_args()
    if a.threads < 1 or a.batch < 1 or a.repeats < 1:
        ap.error("--threads, --batch and --repeats must be >= 1")
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    # PyTorch 1.13's channels_last depthwise convolution resizes its output
    # buffer on every call and warns about it (harmless, deprecated behaviour).
    warnings.filterwarnings("ignore", message="An output with one or more elements was resized")
    if a.check:
        return check(a.tsv)
    variants = a.variants.split(",") if a.variants else list(INFER_VARIANTS)
    bad = [v for v in variants if v not in INFER_VARIANTS]
    if bad:
        ap.error("unknown variant(s): %s" % ",".join(bad))

    cols = ("variant", "subnet", "macs", "params", "rel_diff", "train_ips", "infer_ips",
            "b1_ms", "sandwich_ips")
    rows = []  # dicts of cols; None: does not apply
    if a.sandwich:
        if a.sandwich_subnets:
            texts = a.sandwich_subnets.split(",")
            if len(texts) % 2 or len(texts) < 2 * (a.repeats + 1):
                ap.error("--sandwich-subnets: needs two subnets for the warm-up and for each "
                         "of the %d timed steps" % a.repeats)
            try:
                subs = [Subnet(t) for t in texts]
            except ValueError as e:
                ap.error(str(e))
        else:
            rng = random.Random(1)
            subs = [sample_subnet(rng) for _ in range(2 * (a.repeats + 1))]
        pairs = [(subs[2 * i], subs[2 * i + 1]) for i in range(len(subs) // 2)]
        for v in variants:
            if v in TRAIN_VARIANTS:
                rows.append(dict(variant=v, subnet="sandwich",
                                 sandwich_ips=time_sandwich(a.batch, a.repeats, v, pairs)))
    else:
        try:
            sub = Subnet(REF.get(a.subnet, a.subnet))
        except ValueError as e:
            ap.error(str(e))
        model = SubnetNet(sub)
        macs, params = count_macs(model, sub.res), count_params(model)
        for v in variants:
            row = dict(variant=v, subnet=a.subnet, macs=macs, params=params)
            if v in TRAIN_VARIANTS:
                row["train_ips"] = time_train(model, sub, a.batch, a.repeats, v)
            # at the batch sizes timed (TorchScript modules are made for each)
            row["rel_diff"] = err = (0.0 if v == "default"
                                     else variant_error(model, sub, v, (a.batch, 1)))
            if err < MAX_REL_DIFF:
                row["infer_ips"], row["b1_ms"] = time_infer(model, sub, a.batch, a.repeats, v)
            else:
                print("peer_torch.py: %s: %s gives wrong results (logits %.1e off, relative), "
                      "not timed" % (a.subnet, v, err), file=sys.stderr)
            rows.append(row)

    def fmt(row, col):
        v = row.get(col)
        if v is None or isinstance(v, str):
            return "-" if v is None else v
        return "%.*f" % ({"macs": 0, "params": 0, "b1_ms": 4}.get(col, 2), v) \
            if col != "rel_diff" else "%.2e" % v

    if a.tsv:
        print("# peer_torch.py: batch %d, %d repeats (median); %s" % (a.batch, a.repeats,
                                                                    describe_torch()))
        print("\t".join(cols[:2] + ("threads", "batch") + cols[2:]))
        for row in rows:
            print("\t".join([row["variant"], row["subnet"], str(a.threads), str(a.batch)]
                            + [fmt(row, c) for c in cols[2:]]))
    else:
        print("peer_torch.py: batch %d, %d repeats (median); %s" % (a.batch, a.repeats,
                                                                  describe_torch()))
        print("%-18s %-9s %11s %12s %10s %14s" % ("variant", "subnet", "train img/s",
                                                  "infer img/s", "b1 lat ms", "sandwich img/s"))
        for row in rows:
            print("%-18s %-9s %11s %12s %10s %14s"
                  % (row["variant"], row["subnet"], fmt(row, "train_ips"),
                     fmt(row, "infer_ips"), fmt(row, "b1_ms"), fmt(row, "sandwich_ips")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
