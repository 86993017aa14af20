#!/usr/bin/python3
"""summarise.py: the tables and plots of the schedule study (issue 12,
docs/study.md) from the files recipes/study/study.mk writes per run.

    summarise.py --out DIR [--doc FILE] [--device NAME]... RUNDIR...
    summarise.py --budget RECIPE_TRAIN...

A RUNDIR is named METHOD-sSEED (runs of one METHOD are its seeds) and holds
    train.tsv                 ofa-train's log (images_seen, elapsed_s, train_gflop)
    evaluate.tsv              ofa-extract --evaluate --split test largest medium
                              smallest random:N
    recipe.train              (optional) the resolved recipe without the device,
                              [extract] and [export] sections: the planned budget
    devices/NAME/subnet.txt   ofa-extract's choice for device NAME
    devices/NAME/test.tsv     ofa-extract --evaluate --split test of that subnet

Writes DIR/study.md (the tables), DIR/runs.tsv (the per-run figures at full
precision), DIR/random.tsv (the random subnets' test accuracy per method,
averaged over seeds) and, when gnuplot is installed, DIR/plots/*.png. With
--doc, the tables replace what lies between the lines
"<!-- study-results:begin -->" and "<!-- study-results:end -->" of FILE and
the plots are copied to study/ beside FILE.

--budget prints, for each resolved recipe, the training images the log will
count (images_seen at the end), by the rules of lib/train.c.

Hypervolume: of the random subnets' points (test accuracy, MACs), with
accuracy maximised and MACs minimised, against the reference point (accuracy
0, 1.1 x the MACs of the largest subnet): the area dominated by the points
within the reference box, computed as ofa_hypervolume() in lib/search.c does
(a sweep over MACs), divided by the box's area (1 x the reference MACs), so
that it lies in [0, 1).

Python 3 standard library only; every input is checked, and a missing or
malformed file ends the program with a message naming it and status 1.
"""

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

PROG = "summarise.py"
BEGIN = "<!-- study-results:begin -->"
END = "<!-- study-results:end -->"
HV_REF_FACTOR = 1.1
EVAL_HEADER = ["name", "subnet", "mmacs", "params", "accuracy_test"]
LOG_COLUMNS = ["kind", "images_seen", "elapsed_s", "train_gflop", "val_acc_largest",
               "val_acc_smallest"]


class InputError(Exception):
    """A missing or malformed input: the message names the file (and line)."""


def read_lines(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise InputError("%s: missing" % path) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError("%s: cannot read: %s" % (path, e)) from None


def number(text, path, line, what, lo=None, hi=None):
    try:
        v = float(text)
    except ValueError:
        raise InputError("%s:%d: %s is %r, not a number" % (path, line, what, text)) from None
    if not math.isfinite(v) or (lo is not None and v < lo) or (hi is not None and v > hi):
        raise InputError("%s:%d: %s is %s, outside [%s, %s]" % (path, line, what, text, lo, hi))
    return v


def lround(x):
    """C's lround for x >= 0: halves away from zero."""
    return int(math.floor(x + 0.5))


# ---- inputs ------------------------------------------------------------------------


def read_log(path):
    """ofa-train's TSV log: the last row's images_seen, elapsed_s and
    train_gflop, and the epoch rows' validation accuracies."""
    lines = read_lines(path)
    if not lines:
        raise InputError("%s: empty (not an ofa-train log)" % path)
    head = lines[0].split("\t")
    col = {name: i for i, name in enumerate(head)}
    for name in LOG_COLUMNS:
        if name not in col:
            hint = (" (a log started before ofa-train recorded train_gflop: train the run "
                    "again)" if name == "train_gflop" else "")
            raise InputError("%s:1: no column %s in the header%s" % (path, name, hint))
    last, curve = None, []
    for n, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        if len(f) != len(head):
            raise InputError("%s:%d: %d fields, the header has %d" % (path, n, len(f), len(head)))
        if f[col["kind"]] not in ("step", "epoch"):
            raise InputError("%s:%d: kind is %r, not step or epoch" % (path, n, f[col["kind"]]))
        row = {
            "images": number(f[col["images_seen"]], path, n, "images_seen", 0),
            "elapsed": number(f[col["elapsed_s"]], path, n, "elapsed_s", 0),
            "gflop": number(f[col["train_gflop"]], path, n, "train_gflop", 0),
        }
        if f[col["kind"]] == "epoch" and f[col["val_acc_largest"]] != "":
            curve.append((row["images"],
                          number(f[col["val_acc_largest"]], path, n, "val_acc_largest", 0, 1),
                          number(f[col["val_acc_smallest"]], path, n, "val_acc_smallest", 0, 1)))
        last = row
    if last is None:
        raise InputError("%s: no rows after the header (training has not started)" % path)
    return last, curve


def read_eval(path, want_rows=None):
    """ofa-extract --evaluate --split test output: [(name, subnet, mmacs, acc)]."""
    lines = read_lines(path)
    if not lines or lines[0].split("\t") != EVAL_HEADER:
        raise InputError("%s:1: header is not %s (ofa-extract --evaluate --split test)"
                         % (path, " ".join(EVAL_HEADER)))
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        f = line.split("\t")
        if len(f) != len(EVAL_HEADER):
            raise InputError("%s:%d: %d fields, expected %d" % (path, n, len(f), len(EVAL_HEADER)))
        if not f[0] or not f[1]:
            raise InputError("%s:%d: empty name or subnet" % (path, n))
        mmacs = number(f[2], path, n, "mmacs", 0)
        if mmacs <= 0:
            raise InputError("%s:%d: mmacs is %s, not positive" % (path, n, f[2]))
        rows.append((f[0], f[1], mmacs, number(f[4], path, n, "accuracy_test", 0, 1)))
    if want_rows is not None and len(rows) != want_rows:
        raise InputError("%s: %d subnets, expected %d" % (path, len(rows), want_rows))
    return rows


def read_recipe_train(path):
    """The [train] keys of a resolved recipe (ofa-train --print-recipe)."""
    keys, section = {}, None
    for n, line in enumerate(read_lines(path), start=1):
        s = line.strip()
        if not s or s[0] in "#;":
            continue
        if s.startswith("["):
            section = s
            continue
        if section == "[train]":
            if "=" not in s:
                raise InputError("%s:%d: not a key = value line" % (path, n))
            k, v = (x.strip() for x in s.split("=", 1))
            keys[k] = (v, n)
    need = ["epochs", "batch_size", "subset", "schedule", "shrink_start", "n_random",
            "ps_kernel_epochs", "ps_depth_epochs", "ps_expand_epochs"]
    for k in need:
        if k not in keys:
            raise InputError("%s: no train.%s (not a resolved recipe: ofa-train "
                             "--print-recipe writes every key)" % (path, k))
    t = {}
    for k in need:
        v, n = keys[k]
        t[k] = v if k == "schedule" else number(v, path, n, "train." + k, 0)
    if t["schedule"] not in ("deps", "bignas", "ofa-ps"):
        raise InputError("%s:%d: train.schedule is %r" % (path, keys["schedule"][1],
                                                           t["schedule"]))
    return t


def planned_images(t):
    """Images the log counts at the end of training (lib/train.c: the loader
    drops the last partial batch; a full-network step counts its batch once,
    a sandwich step 2 + n_random times, an ofa-ps shrinking step 1 + n_random
    times). None when train.subset is 0 (the data set's size decides)."""
    subset, batch = int(t["subset"]), int(t["batch_size"])
    if subset == 0:
        return None
    per_epoch = subset // batch * batch
    epochs, nr = int(t["epochs"]), int(t["n_random"])
    if t["schedule"] == "deps":
        full = lround(t["shrink_start"] * epochs)
        units = full + (epochs - full) * (2 + nr)
    elif t["schedule"] == "bignas":
        units = epochs * (2 + nr)
    else:
        ps = int(t["ps_kernel_epochs"] + t["ps_depth_epochs"] + t["ps_expand_epochs"])
        units = epochs + ps * (1 + nr)
    return units * per_epoch


def read_subnet_txt(path):
    """ofa-extract's subnet.txt: the subnet, its measured validation accuracy, MACs."""
    got = {}
    for n, line in enumerate(read_lines(path), start=1):
        f = line.split()
        if not f:
            continue
        if f[0] == "subnet" and len(f) == 2:
            got["subnet"] = f[1]
        elif f[0] == "accuracy" and len(f) >= 3 and f[2] == "measured" and f[1].endswith("%"):
            got["val"] = number(f[1][:-1], path, n, "measured accuracy", 0, 100) / 100
        elif f[0] == "MACs" and len(f) >= 3 and f[2] == "M":
            got["mmacs"] = number(f[1], path, n, "MACs", 0)
    for k, what in (("subnet", "subnet"), ("val", "accuracy ... measured"), ("mmacs", "MACs")):
        if k not in got:
            raise InputError("%s: no '%s' line (not an ofa-extract subnet.txt)" % (path, what))
    return got


class Run:
    def __init__(self, rundir, devices):
        self.dir = rundir
        self.name = os.path.basename(os.path.normpath(rundir))
        m = re.fullmatch(r"(.+)-s([0-9]+)", self.name)
        if not m:
            raise InputError("%s: a run directory is named METHOD-sSEED (e.g. deps-050-s1)"
                             % rundir)
        self.method, self.seed = m.group(1), int(m.group(2))
        log = os.path.join(rundir, "train.tsv")
        last, self.curve = read_log(log)
        self.images, self.elapsed, self.gflop = last["images"], last["elapsed"], last["gflop"]
        rt = os.path.join(rundir, "recipe.train")
        self.planned = planned_images(read_recipe_train(rt)) if os.path.exists(rt) else None
        if self.planned is not None and self.planned != self.images:
            raise InputError("%s: the log counts %d training images, %s plans %d (the run did "
                             "not finish, or the budget arithmetic is wrong)"
                             % (log, self.images, rt, self.planned))
        ev = os.path.join(rundir, "evaluate.tsv")
        rows = read_eval(ev)
        named = {r[0]: r for r in rows}
        for k in ("largest", "medium", "smallest"):
            if k not in named:
                raise InputError("%s: no row %s" % (ev, k))
        self.largest, self.medium, self.smallest = (named[k] for k in
                                                    ("largest", "medium", "smallest"))
        self.random = [r for r in rows if re.fullmatch(r"random[0-9]+", r[0])]
        if not self.random:
            raise InputError("%s: no random subnets (evaluate random:N)" % ev)
        for i, r in enumerate(self.random):
            if r[0] != "random%d" % (i + 1):
                raise InputError("%s: random subnet %d is named %s" % (ev, i + 1, r[0]))
        self.random_mean = sum(r[3] for r in self.random) / len(self.random)
        self.devices = {}
        for d in devices:
            dd = os.path.join(rundir, "devices", d)
            st = read_subnet_txt(os.path.join(dd, "subnet.txt"))
            tt = os.path.join(dd, "test.tsv")
            row = read_eval(tt, 1)[0]
            if row[1] != st["subnet"]:
                raise InputError("%s: evaluates %s, subnet.txt names %s" % (tt, row[1],
                                                                           st["subnet"]))
            st["test"] = row[3]
            self.devices[d] = st


def hypervolume(points, ref_acc, ref_macs):
    """lib/search.c ofa_hypervolume() with MACs in place of latency: points
    (acc, macs), acc maximised, macs minimised."""
    p = sorted(((m, a) for a, m in points if a > ref_acc and m < ref_macs),
               key=lambda q: (q[0], -q[1]))
    hv, best = 0.0, ref_acc
    for i, (m, a) in enumerate(p):
        best = max(best, a)
        upto = p[i + 1][0] if i + 1 < len(p) else ref_macs
        hv += (upto - m) * (best - ref_acc)
    return hv


# ---- formatting --------------------------------------------------------------------


def pct(v):
    return "%.2f" % (100 * v)


def fixed4(v):
    return "%.4f" % v


def count(v):
    return "{:,}".format(int(round(v)))


def gflop(v):
    return "{:,.0f}".format(v) if v >= 100 else "%.3g" % v


def minutes(s):
    return "%.1f" % (s / 60)


def spread(vals, fmt):
    """mean (min-max) over seeds; the value alone for one seed."""
    mean = sum(vals) / len(vals)
    if len(vals) == 1:
        return fmt(mean)
    return "%s (%s-%s)" % (fmt(mean), fmt(min(vals)), fmt(max(vals)))


def md_table(head, rows):
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def machine():
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d cores visible" % (cpu or "unknown CPU", os.cpu_count() or 0)


# ---- plots -------------------------------------------------------------------------


def gnuplot(script, what):
    try:
        p = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True,
                           check=False)
    except OSError as e:
        raise InputError("gnuplot: cannot run it for %s: %s" % (what, e)) from None
    if p.returncode != 0:
        raise InputError("gnuplot failed on %s: %s" % (what, p.stderr.strip()))


def gp_quote(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def plots(outdir, methods, order, runs):
    """PNG plots into outdir/plots; returns their file names."""
    pdir = os.path.join(outdir, "plots")
    os.makedirs(pdir, exist_ok=True)
    term = "pngcairo size 900,600" if subprocess.run(
        ["gnuplot", "-e", "set terminal pngcairo"], capture_output=True,
        check=False).returncode == 0 else "png size 900,600"
    names = []
    # accuracy vs MACs of the random subnets, one series per method
    data = os.path.join(pdir, "random.dat")
    with open(data, "w", encoding="utf-8") as f:
        for m in order:
            f.write("# %s\n" % m)
            for mm, acc in methods[m]["random_points"]:
                f.write("%.4f\t%.4f\n" % (mm, 100 * acc))
            f.write("\n\n")
    png = os.path.join(pdir, "accuracy-vs-macs.png")
    plot = ", ".join("%s index %d using 1:2 with points pt %d ps 1.2 title %s"
                     % (gp_quote(data), i, 4 + 2 * (i % 6), gp_quote(m))
                     for i, m in enumerate(order))
    gnuplot("set terminal %s\nset output %s\nset title %s\nset xlabel 'M MACs per image'\n"
            "set ylabel 'test accuracy (%%)'\nset key outside right\nset grid\nplot %s\n"
            % (term.replace("900,600", "1000,600"), gp_quote(png), gp_quote("%d random subnets, BN-recalibrated test accuracy "
                                              "(mean over seeds)" % methods[order[0]]["n_random"]),
               plot), "the accuracy vs MACs plot")
    names.append("accuracy-vs-macs.png")
    # validation accuracy of the largest and smallest subnets vs images
    data = os.path.join(pdir, "curves.dat")
    with open(data, "w", encoding="utf-8") as f:
        for r in runs:
            f.write("# %s\n" % r.name)
            for im, al, sm in r.curve:
                f.write("%.0f\t%.4f\t%.4f\n" % (im, 100 * al, 100 * sm))
            f.write("\n\n")
    png = os.path.join(pdir, "training.png")
    series = []
    for col, which in ((2, "largest"), (3, "smallest")):
        for i, r in enumerate(runs):
            series.append("%s index %d using ($1/1e6):%d with linespoints lc %d dt %d title %s"
                          % (gp_quote(data), i, col, i + 1, 1 if col == 2 else 2,
                             gp_quote("%s %s" % (r.name, which))))
    gnuplot("set terminal %s\nset output %s\nset title 'validation accuracy during training "
            "(solid: largest, dashed: smallest subnet)'\nset xlabel 'training images "
            "(millions, every subnet counted)'\nset ylabel 'validation accuracy (%%)'\n"
            "set key outside right\nset grid\nplot %s\n"
            % (term.replace("900,600", "1100,600"), gp_quote(png), ", ".join(series)),
            "the training curves plot")
    names.append("training.png")
    return names


# ---- the report --------------------------------------------------------------------


def summarise(runs, devices, plot_names, plot_prefix):
    order = []
    for r in runs:
        if r.method not in order:
            order.append(r.method)
    by = {m: sorted((r for r in runs if r.method == m), key=lambda r: r.seed) for m in order}
    ref = runs[0]
    for r in runs[1:]:
        if abs(r.largest[2] - ref.largest[2]) > 1e-9:
            raise InputError("%s/evaluate.tsv: the largest subnet has %s M MACs, %s/evaluate.tsv"
                             " %s: not the same search space" % (r.dir, r.largest[2], ref.dir,
                                                                 ref.largest[2]))
        if [x[1] for x in r.random] != [x[1] for x in ref.random]:
            raise InputError("%s/evaluate.tsv: its random subnets are not those of "
                             "%s/evaluate.tsv (every run must evaluate the same random:N)"
                             % (r.dir, ref.dir))
    ref_macs = HV_REF_FACTOR * ref.largest[2]
    for r in runs:
        r.hv = hypervolume([(x[3], x[2]) for x in r.random], 0.0, ref_macs) / ref_macs
    methods = {}
    for m in order:
        rs = by[m]
        pts = []
        for k in range(len(ref.random)):
            pts.append((ref.random[k][2], sum(r.random[k][3] for r in rs) / len(rs)))
        methods[m] = {"random_points": pts, "n_random": len(ref.random)}

    out = []
    out.append("Generated by `recipes/study/summarise.py` from %d runs on %s. Accuracies are "
               "BN-recalibrated top-1 test accuracy in %% (Fashion-MNIST test set); "
               "for methods with several seeds, mean (min-max) over the seeds."
               % (len(runs), machine()))
    out.append("")
    out.append("Hypervolume (HV) of the %d random subnets in (test accuracy, MACs): "
               "reference point accuracy 0 and %.4f M MACs (1.1 x the largest subnet's "
               "%.4f M), normalised by the reference box (1 x %.4f M MACs)."
               % (len(ref.random), ref_macs, ref.largest[2], ref_macs))
    out.append("")
    out.append("### Per method")
    out.append("")
    head = ["method", "seeds", "largest", "medium", "smallest", "random mean", "HV",
            "images", "wall time (min)", "GFLOP"]
    rows = []
    for m in order:
        rs = by[m]
        rows.append([m, ", ".join(str(r.seed) for r in rs),
                     spread([r.largest[3] for r in rs], pct),
                     spread([r.medium[3] for r in rs], pct),
                     spread([r.smallest[3] for r in rs], pct),
                     spread([r.random_mean for r in rs], pct),
                     spread([r.hv for r in rs], fixed4),
                     spread([r.images for r in rs], count),
                     spread([r.elapsed for r in rs], minutes),
                     spread([r.gflop for r in rs], gflop)])
    out.append(md_table(head, rows))
    out.append("")
    out.append("Reference subnets: largest `%s` (%.2f M MACs), medium `%s` (%.2f M), "
               "smallest `%s` (%.2f M). Wall time: the log's `elapsed_s` (training and the "
               "per-epoch validation, not the evaluation above); GFLOP: its `train_gflop` "
               "(training steps only)."
               % (ref.largest[1], ref.largest[2], ref.medium[1], ref.medium[2],
                  ref.smallest[1], ref.smallest[2]))
    out.append("")
    out.append("### Per run")
    out.append("")
    head = ["run", "largest", "medium", "smallest", "random mean", "HV", "images",
            "planned images", "wall time (min)", "GFLOP"]
    rows = [[r.name, pct(r.largest[3]), pct(r.medium[3]), pct(r.smallest[3]),
             pct(r.random_mean), fixed4(r.hv), count(r.images),
             count(r.planned) if r.planned is not None else "-", minutes(r.elapsed),
             gflop(r.gflop)] for m in order for r in by[m]]
    out.append(md_table(head, rows))
    if devices:
        out.append("")
        out.append("### Per device")
        out.append("")
        out.append("The subnet `ofa-extract` chose for each device profile, its MACs, its "
                   "accuracy measured by ofa-extract on the validation split (`subnet.txt`) "
                   "and its BN-recalibrated test accuracy.")
        out.append("")
        head = ["device", "run", "subnet", "M MACs", "validation", "test"]
        rows = [[d, r.name, "`%s`" % r.devices[d]["subnet"], "%.2f" % r.devices[d]["mmacs"],
                 pct(r.devices[d]["val"]), pct(r.devices[d]["test"])]
                for d in devices for m in order for r in by[m]]
        out.append(md_table(head, rows))
        out.append("")
        head = ["device"] + order
        rows = [[d] + [spread([r.devices[d]["test"] for r in by[m]], pct) for m in order]
                for d in devices]
        out.append("Test accuracy of each device's subnet per method:")
        out.append("")
        out.append(md_table(head, rows))
    claims = compare_claims(by)
    if claims:
        out.append("")
        out.append("### Against the published claims")
        out.append("")
        out.append(md_table(["claim (as summarised in issue 12)", "published", "this study"],
                            claims))
    out.append("")
    if plot_names:
        out.append("### Plots")
        out.append("")
        for p in plot_names:
            out.append("![%s](%s%s)" % (p[:-4], plot_prefix, p))
            out.append("")
    else:
        out.append("(No plots: gnuplot is not installed.)")
        out.append("")
    return "\n".join(out), methods, order, by


def compare_claims(by):
    """The issue's published figures beside ours, for the methods present."""
    def mean(m, f):
        return sum(f(r) for r in by[m]) / len(by[m])
    small = lambda r: r.smallest[3]  # noqa: E731
    rows = []
    if "deps-050" in by and "ofa-ps" in by:
        d = 100 * (mean("deps-050", small) - mean("ofa-ps", small))
        rows.append(["DepS beats OFA progressive shrinking on the smallest subnet",
                     "+1.36 points (CIFAR-10)", "%+.2f points (deps-050 - ofa-ps)" % d])
        g = mean("ofa-ps", lambda r: r.gflop) / mean("deps-050", lambda r: r.gflop)
        t = mean("ofa-ps", lambda r: r.elapsed) / mean("deps-050", lambda r: r.elapsed)
        rows.append(["DepS trains at lower cost than OFA",
                     "2.5x lower cost",
                     "ofa-ps / deps-050: %.2fx the GFLOP, %.2fx the wall time, on the same "
                     "images budget" % (g, t)])
    for other in ("deps-025", "deps-075"):
        if "deps-050" in by and other in by:
            d = 100 * (mean("deps-050", small) - mean(other, small))
            h = mean("deps-050", lambda r: r.hv) - mean(other, lambda r: r.hv)
            rows.append(["shrinking from 50%% beats %s%%" % other[-3:].lstrip("0"),
                         "50% best",
                         "smallest %+.2f points, HV %+.4f (deps-050 - %s)" % (d, h, other)])
    if "deps-050" in by and "deps-noramp" in by:
        d = 100 * (mean("deps-050", small) - mean("deps-noramp", small))
        rows.append(["the beta ramp helps the smallest subnet", "about +1.9 points (ImageNet)",
                     "%+.2f points (deps-050 - deps-noramp)" % d])
    return rows


def write_atomic(path, text):
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".summarise-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def splice_doc(doc, block):
    lines = read_lines(doc)
    try:
        b, e = lines.index(BEGIN), lines.index(END)
    except ValueError:
        raise InputError("%s: no line %s followed by a line %s to put the results between"
                         % (doc, BEGIN, END)) from None
    if e < b:
        raise InputError("%s: %s comes before %s" % (doc, END, BEGIN))
    return "\n".join(lines[:b + 1] + [block] + lines[e:]) + "\n"


def main(argv):
    ap = argparse.ArgumentParser(prog=PROG, description="Tables and plots of the schedule "
                                 "study from its run directories (recipes/study/study.mk).")
    ap.add_argument("--out", help="directory for study.md, runs.tsv, random.tsv, plots/")
    ap.add_argument("--doc", help="splice the tables into this file (between the markers) "
                    "and copy the plots to study/ beside it")
    ap.add_argument("--device", action="append", default=[], help="a device profile whose "
                    "choices to report (repeatable)")
    ap.add_argument("--budget", action="store_true", help="print the planned training images "
                    "of each resolved recipe given instead of run directories")
    ap.add_argument("--no-plots", action="store_true", help="skip the gnuplot plots")
    ap.add_argument("inputs", nargs="+", metavar="RUNDIR")
    a = ap.parse_args(argv)
    try:
        if a.budget:
            for path in a.inputs:
                p = planned_images(read_recipe_train(path))
                print("%s\t%s" % (path, "-" if p is None else p))
            return 0
        if not a.out:
            ap.error("--out is required")
        runs = [Run(d, a.device) for d in a.inputs]
        names = [r.name for r in runs]
        if len(set(names)) != len(names):
            raise InputError("a run is given twice: %s" % " ".join(names))
        os.makedirs(a.out, exist_ok=True)
        plot_names = []
        use_plots = not a.no_plots and shutil.which("gnuplot") is not None
        # the tables first (they check every input), then the plots
        _, methods, order, by = summarise(runs, a.device, [], "")
        if use_plots:
            plot_names = plots(a.out, methods, order, [r for m in order for r in by[m]])
        text, methods, order, by = summarise(runs, a.device, plot_names, "plots/")
        write_atomic(os.path.join(a.out, "study.md"), "# Schedule study: results\n\n" + text)
        tsv = ["run\tmethod\tseed\tacc_largest\tacc_medium\tacc_smallest\tacc_random_mean\t"
               "hv\timages\tplanned_images\telapsed_s\ttrain_gflop"]
        for m in order:
            for r in by[m]:
                tsv.append("%s\t%s\t%d\t%.4f\t%.4f\t%.4f\t%.6f\t%.6f\t%d\t%s\t%.1f\t%.6f" % (
                    r.name, r.method, r.seed, r.largest[3], r.medium[3], r.smallest[3],
                    r.random_mean, r.hv, r.images, "-" if r.planned is None else r.planned,
                    r.elapsed, r.gflop))
        write_atomic(os.path.join(a.out, "runs.tsv"), "\n".join(tsv) + "\n")
        rnd = ["subnet\tmmacs\t" + "\t".join(order)]
        ref = runs[0]
        for k, x in enumerate(ref.random):
            rnd.append("%s\t%.4f\t%s" % (x[1], x[2], "\t".join(
                "%.6f" % methods[m]["random_points"][k][1] for m in order)))
        write_atomic(os.path.join(a.out, "random.tsv"), "\n".join(rnd) + "\n")
        if a.doc:
            block, _, _, _ = summarise(runs, a.device, plot_names, "study/")
            text = splice_doc(a.doc, block)
            if plot_names:
                pd = os.path.join(os.path.dirname(a.doc) or ".", "study")
                os.makedirs(pd, exist_ok=True)
                for p in plot_names:
                    shutil.copyfile(os.path.join(a.out, "plots", p), os.path.join(pd, p))
            write_atomic(a.doc, text)
        return 0
    except InputError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
    except OSError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
