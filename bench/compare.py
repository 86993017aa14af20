#!/usr/bin/python3
"""compare.py: our training and inference speed against PyTorch's, side by side.

Runs bench/bench_train_step (ours) and bench/peer_torch.py (the same networks
and the same work in PyTorch) ALTERNATELY, one (subnet, threads) configuration
at a time, for several rounds (ours first in odd rounds, the peer first in
even ones, so that a drifting machine load hits both alike), takes the median
over the rounds of each program's own median of --repeats, and prints:

  1. ours, peer default, peer best (the fastest of its configurations, named)
     and the speed-up of ours over peer best (img/s: ours / peer; latency:
     peer / ours; above 1: ours is faster) for
       train img/s     one training step of the subnet
       infer img/s     fp32 inference at the batch size
       b1 latency ms   fp32 inference of one image
       sandwich img/s  one sandwich step (4 subnets, one update)
     plus our int8 runtime's batch-1 latency (one thread, thread CPU time) and
     its ratio to our fp32 batch-1 latency of the same runs (int8 / fp32 b1);
  2. our model GFLOP/s (6 x MACs x images / s for training, 2 x for
     inference) against OpenBLAS sgemm 1024^3 GFLOP/s measured in the same
     runs;
  3. with one thread and more in --threads, the scaling: the training (and
     sandwich) step's images/s at t threads over those at one, ours and the
     peer's best variant (at each count), and the sgemm of our runs.

It checks that both sides build the same networks (exit status 1 if not): the MACs and
parameter counts of ours (ofa_subnet_macs/params, in bench_train_step --tsv)
must equal those counted on the PyTorch modules, and peer_torch.py --check
must find its weight-shared supernet equal to its standalone subnets.

When the peer's Python cannot import torch (Debian: apt-get install
python3-torch), the peer columns are skipped with a one-line notice.

Usage (from the build directory; standard library only):
  /usr/bin/python3 bench/compare.py [--bench bench/bench_train_step]
      [--peer-python /usr/bin/python3] [--no-peer] [--batch 128] [--rounds 3]
      [--repeats 3] [--threads 1,2] [--subnets largest,medium,smallest,sandwich]
      [--quick] [--markdown]
  --quick (or BENCH_QUICK=1 in the environment, as `make bench BENCH_QUICK=1`):
  batch 16, one round of one repeat, one thread, the smallest subnet and the
  sandwich step. `make bench` and `make bench-compare` run this script.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SUBNETS = ("largest", "medium", "smallest")
PEER_NOTICE = "compare.py: peer skipped: %s cannot import torch (apt-get install python3-torch)"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd):
    """stdout of cmd; exits with its stderr when it fails."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        log("compare.py: failed (exit %d): %s\n%s" % (p.returncode, " ".join(cmd),
                                                       p.stderr[-2000:]))
        sys.exit(1)
    for line in p.stderr.splitlines():
        if "wrong results" in line:  # peer_torch.py names variants it did not time
            log("  " + line)
    return p.stdout


def parse_tsv(text):
    """Rows of a TSV with '#' comments and a header: dicts of floats (None
    for '-'), strings where a value is not a number."""
    lines = [l for l in text.splitlines() if l and not l.startswith("#")]
    if not lines:
        return []
    head = lines[0].split("\t")
    rows = []
    for line in lines[1:]:
        row = {}
        for k, v in zip(head, line.split("\t")):
            if v == "-":
                row[k] = None
            else:
                try:
                    row[k] = float(v)
                except ValueError:
                    row[k] = v
        rows.append(row)
    return rows


def comments(text):
    return [l[2:] for l in text.splitlines() if l.startswith("# ")]


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(num, den):
    """num / den, or None where either is missing (or den is 0)."""
    return num / den if num is not None and den else None


def peer_meds(rounds, col):
    """The peer's median of col for each of its variants over the rounds (each
    round a list of rows, one a variant); variants without a figure left out."""
    per_variant = {}
    for rows_of_round in rounds:
        for r in rows_of_round:
            per_variant.setdefault(r["variant"], []).append(r[col])
    meds = {v: med(x) for v, x in per_variant.items()}
    return {v: m for v, m in meds.items() if m is not None}


def find_bench(path):
    for p in ([path] if path else [os.path.join("bench", "bench_train_step"),
                                   os.path.join(HERE, "bench_train_step")]):
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    log("compare.py: bench_train_step not found (build it: make bench/bench_train_step; "
        "or give --bench PATH)")
    sys.exit(1)


def peer_available(python):
    try:
        p = subprocess.run([python, "-c", "import torch"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
        return p.returncode == 0
    except OSError:
        return False


def fmt(v, kind):
    if v is None:
        return "-"
    if kind == "ms":
        return "%.2f" % v if v < 100 else "%.0f" % v
    if kind == "ms3":  # the int8 latencies, of 0.06 to 0.4 ms: 3 decimals
        return "%.3f" % v if v < 100 else "%.0f" % v
    if kind == "x":
        return "%.2fx" % v
    if kind == "pct":
        return "%.0f%%" % v
    return "{:,.0f}".format(v) if v >= 100 else "%.1f" % v


def table(head, rows, markdown, left):
    """Print rows (lists of strings) under head, aligned or as markdown;
    the columns in left are text (left-aligned), the others numbers."""
    if markdown:
        print("| " + " | ".join(head) + " |")
        print("|" + "|".join("---" if i in left else "---:" for i in range(len(head))) + "|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        return
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    for r in [head] + rows:
        print("  ".join(x.ljust(w[i]) if i in left else x.rjust(w[i])
                        for i, x in enumerate(r)).rstrip())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", help="bench_train_step (default: bench/bench_train_step)")
    ap.add_argument("--peer-python", default="/usr/bin/python3",
                    help="Python with torch for bench/peer_torch.py (default /usr/bin/python3)")
    ap.add_argument("--no-peer", action="store_true", help="ours only")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each side")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats inside each run")
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    ap.add_argument("--subnets", default="largest,medium,smallest,sandwich")
    ap.add_argument("--quick", action="store_true",
                    help="batch 16, 1 round x 1 repeat, 1 thread, smallest and sandwich")
    ap.add_argument("--markdown", action="store_true", help="tables in markdown")
    a = ap.parse_args()
    if a.quick or os.environ.get("BENCH_QUICK", "") not in ("", "0"):
        a.batch, a.rounds, a.repeats, a.threads = 16, 1, 1, "1"
        a.subnets = "smallest,sandwich"
    try:
        threads = [int(t) for t in a.threads.split(",")]
    except ValueError:
        ap.error("--threads: comma-separated integers")
    names = a.subnets.split(",")
    if any(n not in SUBNETS + ("sandwich",) for n in names) or min(threads) < 1 \
            or min(a.batch, a.rounds, a.repeats) < 1:
        ap.error("bad --subnets, --threads, --batch, --rounds or --repeats")
    bench = find_bench(a.bench)
    peer_script = os.path.join(HERE, "peer_torch.py")
    peer = not a.no_peer and peer_available(a.peer_python)
    if not a.no_peer and not peer:
        print(PEER_NOTICE % a.peer_python, flush=True)
    common = ["--batch", str(a.batch), "--repeats", str(a.repeats)]
    # PyTorch loads the same OpenBLAS (Debian's libblas.so.3): give it the
    # kernels ours run (bench_train_step may have chosen them itself when
    # OpenBLAS does not know the CPU, lib/blas.c), unless the caller set them.
    if peer and "OPENBLAS_CORETYPE" not in os.environ:
        m = re.search(r", kernels (\w+),", run([bench, "--tsv", "--only", "smallest",
                                                "--only-threads", "1", "--batch", "1",
                                                "--repeats", "1"]))
        if m:
            os.environ["OPENBLAS_CORETYPE"] = m.group(1)

    load0 = os.getloadavg()[0]
    t_start = time.time()
    check = {}
    if peer:
        log("compare.py: peer_torch.py --check (same networks?)")
        check = {r["subnet"]: r for r in parse_tsv(run([a.peer_python, peer_script,
                                                        "--check", "--tsv"]))}
    pairs = []
    if peer and "sandwich" in names:
        for line in run([bench, "--list-sandwich", "--repeats", str(a.repeats)]).splitlines():
            pairs += line.split("\t")[1:]

    ours, theirs = {}, {}  # (name, threads) -> [row of each round]; [[rows] of each round]
    blas, torch_line = "", ""
    for rnd in range(a.rounds):
        for t in threads:
            for name in names:
                key = (name, t)
                sides = ["ours", "peer"] if peer else ["ours"]
                if rnd % 2 == 1:
                    sides.reverse()
                for side in sides:
                    log("round %d/%d, %s, %d thread%s: %s" % (rnd + 1, a.rounds, name, t,
                                                            "s" if t > 1 else "", side))
                    if side == "ours":
                        out = run([bench, "--tsv", "--only", name, "--only-threads", str(t)]
                                  + common)
                        blas = blas or comments(out)[0]
                        ours.setdefault(key, []).append(parse_tsv(out)[0])
                    else:
                        what = (["--sandwich", "--sandwich-subnets", ",".join(pairs)]
                                if name == "sandwich" else ["--subnet", name])
                        out = run([a.peer_python, peer_script, "--tsv", "--threads", str(t)]
                                  + what + common)
                        torch_line = torch_line or comments(out)[0]
                        theirs.setdefault(key, []).append(parse_tsv(out))

    # The same networks on both sides?
    status = 0
    if peer:
        bad = []
        for (name, t), runs in ours.items():
            if name == "sandwich":
                continue
            mine = (runs[0]["macs"], runs[0]["params"])
            for rows in theirs[(name, t)] + [[check[name]]]:
                for r in rows:
                    if (r["macs"], r["params"]) != mine:
                        bad.append("%s: ours %d MACs, %d params; PyTorch %d, %d"
                                   % (name, mine[0], mine[1], r["macs"], r["params"]))
        sup = [n for n, r in check.items() if r["supernet_vs_standalone"] >= 1e-4]
        if sup:
            bad.append("the PyTorch supernet differs from its standalone subnets: "
                       + ", ".join(sup))
        if bad:
            status = 1
            print("ARCHITECTURE MISMATCH, the comparison is not valid:\n  "
                  + "\n  ".join(sorted(set(bad))))

    # (thread counts vary from run to run: left out)
    print("ours: %s" % re.sub(r", \d+ BLAS threads, \d+ OpenMP threads", "",
                              blas.split("; ", 1)[-1]))
    if peer:
        print("peer: %s; OpenBLAS kernels %s" % (
            re.sub(r", \d+ threads$", "", torch_line.split("; ", 1)[-1]),
            os.environ.get("OPENBLAS_CORETYPE", "chosen by OpenBLAS")))
        nets = [n for n in SUBNETS if n in names]
        if nets and not status:
            print("same networks: %s (MACs and parameters equal on both sides)"
                  % ", ".join("%s %.2f M MACs %.3f M params"
                              % (n, check[n]["macs"] / 1e6, check[n]["params"] / 1e6)
                              for n in nets))
    print("batch %d; medians over %d round%s (alternating) of medians of %d repeat%s; "
          "load average %.1f at the start, %.1f at the end; %.0f s"
          % (a.batch, a.rounds, "s" if a.rounds > 1 else "", a.repeats,
             "s" if a.repeats > 1 else "", load0, os.getloadavg()[0], time.time() - t_start))
    print()

    # Table 1: ours against the peer.
    metrics = [("train img/s", "train_ips", False), ("infer img/s", "infer_ips", False),
               ("b1 latency ms", "b1_ms", True), ("sandwich img/s", "sandwich_ips", False)]
    head = ["subnet", "thr", "metric", "ours"]
    if peer:
        head += ["peer default", "peer best", "speed-up", "peer best config"]
    rows = []
    for t in threads:
        for name in names:
            key = (name, t)
            for label, col, lower_better in metrics:
                mine = med([r[col] for r in ours[key]])
                if mine is None:
                    continue
                row = [name, str(t), label, fmt(mine, "ms" if lower_better else "")]
                if peer:
                    meds = peer_meds(theirs[key], col)
                    default = meds.get("default")
                    best_v = (min if lower_better else max)(meds, key=meds.get) if meds else None
                    best = meds.get(best_v)
                    speed = None
                    if best:
                        speed = best / mine if lower_better else mine / best
                    kind = "ms" if lower_better else ""
                    row += [fmt(default, kind), fmt(best, kind), fmt(speed, "x"), best_v or "-"]
                rows.append(row)
            if name != "sandwich":
                q = med([r["int8_b1_ms"] for r in ours[key]])
                b1 = med([r["b1_ms"] for r in ours[key]])
                only = ["-", "-", "-", "(ours only)"] if peer else []
                if q is not None:
                    rows.append([name, str(t), "int8 b1 ms", fmt(q, "ms3")] + only)
                    if b1:
                        rows.append([name, str(t), "int8 / fp32 b1", fmt(q / b1, "x")] + only)
    table(head, rows, a.markdown, left={0, 2, 7})
    print()

    # Table 2: our model GFLOP/s against sgemm.
    head = ["subnet", "thr", "train GFLOP/s", "% sgemm", "infer GFLOP/s", "% sgemm",
            "sgemm GFLOP/s"]
    rows = []
    for t in threads:
        for name in names:
            if name == "sandwich":
                continue
            runs = ours[(name, t)]
            tg, ig = med([r["train_gflops"] for r in runs]), med([r["infer_gflops"] for r in runs])
            peak = med([r["sgemm_gflops"] for r in runs])
            rows.append([name, str(t), "%.1f" % tg, fmt(100 * tg / peak, "pct"), "%.1f" % ig,
                         fmt(100 * ig / peak, "pct"), "%.1f" % peak])
    if rows:
        table(head, rows, a.markdown, left={0})

    # Table 3: from one thread to more, the training (or sandwich) step's
    # images/s at t threads over those at one: ours, the peer's best variant
    # at each thread count, and the sgemm ceiling measured in our runs.
    if 1 in threads and len(threads) > 1:
        head = ["subnet", "threads", "ours"] + (["peer best"] if peer else []) + ["sgemm"]
        rows = []
        for t in threads:
            if t == 1:
                continue
            for name in names:
                col = "sandwich_ips" if name == "sandwich" else "train_ips"
                one, many = ours[(name, 1)], ours[(name, t)]
                row = [name, "1 -> %d" % t,
                       fmt(ratio(med([r[col] for r in many]), med([r[col] for r in one])), "x")]
                if peer:
                    m1, mt = peer_meds(theirs[(name, 1)], col), peer_meds(theirs[(name, t)], col)
                    row.append(fmt(ratio(max(mt.values()) if mt else None,
                                         max(m1.values()) if m1 else None), "x"))
                row.append(fmt(ratio(med([r["sgemm_gflops"] for r in many]),
                                     med([r["sgemm_gflops"] for r in one])), "x"))
                rows.append(row)
        print()
        table(head, rows, a.markdown, left={0, 1})
    return status


if __name__ == "__main__":
    sys.exit(main())
