#!/bin/sh
# check_errors.sh: every class of bad input the programs reject, run for
# real on small synthetic files: each case must fail with a non-zero exit
# status that is not a crash (no signal, no assertion, no sanitizer report,
# no hang), leave no temporary file behind, and print exactly the message
# that docs/errors.md shows for it. The table in docs/errors.md (between its
# BEGIN and END markers) is this script's output:
#
#   sh tests/check_errors.sh --print    # prints the table from real runs
#   sh tests/check_errors.sh --update   # writes it into docs/errors.md
#
# Messages are shown with the temporary directory replaced by DIR, a process
# id in a temporary file name by PID and the CRC-32 values of a damaged
# data.h5 (which change with every file: HDF5 records modification times) by
# XXXXXXXX. Needs /usr/bin/python3 (the synthetic inputs) and takes 5 s of
# CPU time.
set -u
B=$(cd "${OFA_BUILDDIR:-.}" && pwd)
S=$(cd "${OFA_SRCDIR:-.}" && pwd)
MODE=check
case "${1:-}" in
--print) MODE=print ;;
--update) MODE=update ;;
"") ;;
*) echo "usage: $0 [--print | --update]" >&2; exit 2 ;;
esac
PY=/usr/bin/python3
[ -x "$PY" ] || { echo "check_errors: $PY is missing (writes the synthetic inputs): skipped"; exit 77; }
command -v timeout >/dev/null 2>&1 || { echo "check_errors: timeout (coreutils) is missing: skipped"; exit 77; }
T=$(mktemp -d /tmp/ofa-check-errors-XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
trap 'exit 1' INT TERM
# The programs under their installed names (messages and getopt's start with
# argv[0]), one thread (reproducible figures), English system messages.
mkdir "$T/bin"
for p in datasets/ofa-data train/ofa-train extract/ofa-extract export/ofa-export export/ofa-run \
    export/ofa-report; do
    ln -s "$B/$p" "$T/bin/${p#*/}"
done
PATH="$T/bin:$PATH"
LC_ALL=C
OMP_NUM_THREADS=1
OPENBLAS_NUM_THREADS=1
export PATH LC_ALL OMP_NUM_THREADS OPENBLAS_NUM_THREADS
unset OFA_RECIPES
cd "$T" || exit 1
cp "$S"/tests/fixtures/recipes/*.ini "$S"/tests/fixtures/errors/* .
fail() { echo "check_errors: $*" >&2; exit 1; }
bad=0
problem() { # ID WHAT
    echo "check_errors: $1: $2" >&2
    sed 's/^/    /' .err >&2
    bad=$((bad + 1))
}

# ---- the table ---------------------------------------------------------------
TABLE=$T/.table
: >"$TABLE"
# group TITLE: a heading and the head of its table
group() {
    printf '\n### %s\n\n| id | input | class of bad input | exact message (after `$ command`) | exit |\n|---|---|---|---|---|\n' \
        "$1" >>"$TABLE"
}
# A markdown code span of $1 (a pipe escaped for the table).
span() {
    case $1 in
    *'`'*) printf '`` %s ``' "$1" | sed 's/|/\\|/g' ;;
    *) printf '`%s`' "$1" | sed 's/|/\\|/g' ;;
    esac
}
# The command as a user types it: arguments quoted where the shell needs it.
shown() {
    out=
    for a in "$@"; do
        case $a in
        '' | *[!A-Za-z0-9_./=,:+@%-]*) a="'$a'" ;;
        esac
        out="$out${out:+ }$a"
    done
    printf '%s' "$out"
}
# t ID INPUT CLASS PROGRAM [ARG...]: run PROGRAM in $T; it must fail cleanly;
# its message becomes the row.
t() {
    id=$1 input=$2 class=$3
    shift 3
    status=0
    timeout 120 "$@" >.out 2>.err </dev/null || status=$?
    if [ $status -eq 0 ]; then
        problem "$id" "exit status 0 on bad input"
    elif [ $status -eq 124 ]; then
        problem "$id" "still running after 120 s (hang?)"
    elif [ $status -ge 128 ]; then
        problem "$id" "killed by signal $((status - 128)) (crash)"
    fi
    if grep -q -E 'assertion failed|Assertion|Sanitizer|runtime error:|Segmentation fault' .err; then
        problem "$id" "crash or sanitizer report"
    fi
    [ -s .err ] || problem "$id" "no message on stderr"
    case $(head -n 1 .err) in
    "$1: "* | "$1 $2: "*) ;; # the program, or the program and its command
    *) problem "$id" "the message does not start with '$1: '" ;;
    esac
    left=$(find . -name '*.tmp.*' -o -name '.export.*' -o -name '.report.md.*')
    [ -z "$left" ] || { problem "$id" "left temporary files: $left"; rm -rf $left; }
    msg=
    while IFS= read -r line; do
        [ -z "$line" ] || msg="$msg<br>$(span "$line")"
    done <<EOF
$(sed -e "s|$T|DIR|g" -e 's/\.tmp\.[0-9][0-9]*/.tmp.PID/g' -e 's/CRC-32 [0-9a-f]\{8\}, expected [0-9a-f]\{8\}/CRC-32 XXXXXXXX, expected XXXXXXXX/' \
    -e 's/NaN\/Inf at step [0-9]* (epoch [0-9]*)/NaN\/Inf at step N (epoch E)/' -e 's/NaN\/Inf at step [0-9]*/NaN\/Inf at step N/' .err)
EOF
    printf '| `%s` | %s | %s | %s%s | %s |\n' "$id" "$input" "$class" "$(span "\$ $(shown "$@")")" \
        "$msg" "$status" >>"$TABLE"
}
# setup COMMAND...: a step that must succeed
setup() {
    "$@" >.out 2>.err </dev/null || { cat .err >&2; fail "setup failed: $*"; }
}

# ---- synthetic inputs ------------------------------------------------------------
# idx/: 320 training and 64 test images of 16x16 with 10 classes (a pattern
# per class plus noise); the other sources are small and wrong in one way.
"$PY" - <<'PY' || fail "could not write the synthetic inputs"
import gzip, os, struct, zlib

def write(path, data):
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)

def pixels(n, side, c, seed, labels):
    x, px = seed, bytearray()
    for i in range(n):
        k = labels[i]
        for y in range(side):
            for xx in range(side):
                for _ in range(c):
                    x = (x * 1103515245 + 12345) & 0x7fffffff
                    px.append(((x >> 16) & 63) + (150 if (xx + y) % 10 == k else 0))
    return bytes(px)

def labels(n):
    return bytes(i % 10 for i in range(n))

def idx_images(n, side, c=1, seed=7):
    if c == 1:
        head = struct.pack(">IIII", 0x803, n, side, side)
    else:
        head = struct.pack(">IIIII", 0x804, n, side, side, c)
    return head + pixels(n, side, c, seed, labels(n))

def idx_labels(lab):
    return struct.pack(">II", 0x801, len(lab)) + bytes(lab)

def idx_set(ntrain=20, ntest=10, side=8):
    return {"train-images-idx3-ubyte": idx_images(ntrain, side, seed=7),
            "train-labels-idx1-ubyte": idx_labels(labels(ntrain)),
            "t10k-images-idx3-ubyte": idx_images(ntest, side, seed=11),
            "t10k-labels-idx1-ubyte": idx_labels(labels(ntest))}

def idx_dir(d, files):
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        write("%s/%s" % (d, name), data)

TI, TL = "train-images-idx3-ubyte", "train-labels-idx1-ubyte"
idx_dir("idx", idx_set(320, 64, 16))
f = idx_set(); f[TI] = b"\xff\xd8\xff\xe0" + f[TI][4:]; idx_dir("idx-magic", f)
f = idx_set(); f[TI] = f[TI][:2] + b"\x0d" + f[TI][3:]; idx_dir("idx-type", f)
f = idx_set(); f[TI] = b"\x00\x00\x08\x02" + f[TI][4:]; idx_dir("idx-rank", f)
f = idx_set(); f[TI] = f[TI][:8] + struct.pack(">I", 0) + f[TI][12:]; idx_dir("idx-zero", f)
f = idx_set(); f[TI] = f[TI][:-30]; idx_dir("idx-truncated", f)
f = idx_set(); f[TI] = f[TI] + b"extra!!"; idx_dir("idx-trailing", f)
f = idx_set(); f[TL] = idx_labels(labels(19)); idx_dir("idx-count", f)
f = idx_set(); lab = bytearray(labels(20)); lab[3] = 12; f[TL] = idx_labels(lab); idx_dir("idx-label", f)
f = idx_set(); f["t10k-images-idx3-ubyte"] = idx_images(10, 9, seed=11); idx_dir("idx-sizes", f)
f = idx_set(); del f["t10k-labels-idx1-ubyte"]; idx_dir("idx-missing", f)
def gz(files):
    return {k + ".gz": gzip.compress(v, mtime=0) for k, v in files.items()}
f = gz(idx_set()); f[TI + ".gz"] = f[TI + ".gz"][:len(f[TI + ".gz"]) // 2]; idx_dir("gz-truncated", f)
f = gz(idx_set()); g = bytearray(f[TI + ".gz"]); g[-8] ^= 0xff; f[TI + ".gz"] = bytes(g); idx_dir("gz-crc", f)
f = gz(idx_set()); f[TI + ".gz"] += b"garbage after the stream"; idx_dir("gz-trailing", f)
# ofa-run inputs: IDX images with 3 channels; text
write("rgb-images-idx3-ubyte", idx_images(2, 16, c=3))
write("notes.txt", b"these are not images\n")

# CIFAR-10/100: records of 1 (2) label bytes and 3072 pixel bytes
def cifar(labs, coarse=None):
    out = bytearray()
    for i, y in enumerate(labs):
        if coarse is not None:
            out.append(coarse[i])
        out.append(y)
        out += bytes((i * 7 + j) & 255 for j in range(3072))
    return bytes(out)
write("cifar-size/data_batch_1.bin", cifar([1, 2])[:-100])
write("cifar-label/data_batch_1.bin", cifar([1, 10]))
write("cifar100-coarse/train.bin", cifar([5, 6], coarse=[3, 25]))

# PNG: 8-bit grey
def png(side, value=128, w=None):
    w = w or side
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\x00" + bytes((value + x + y) & 255 for x in range(w)) for y in range(side))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, side, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
write("png-notpng/bag/1.png", png(8)); write("png-notpng/coat/1.png", b"GIF89a, not a PNG\n")
write("png-truncated/bag/1.png", png(8)); write("png-truncated/coat/1.png", png(8)[:60])
write("png-sizes/bag/1.png", png(8)); write("png-sizes/coat/1.png", png(9))
write("png-empty/bag/1.png", png(8)); os.makedirs("png-empty/coat", exist_ok=True)
write("png-stray/bag/1.png", png(8)); write("png-stray/coat/1.png", png(8))
write("png-stray/README", b"class folders only\n")
write("png-nested/bag/1.png", png(8)); write("png-nested/coat/old/1.png", png(8))
for d in ("train/bag", "train/coat", "test/bag", "test/shoe"):
    write("png-test/%s/1.png" % d, png(8))
os.makedirs("png-none", exist_ok=True)
# 10 classes, no test split (for ofa-run)
for k in range(10):
    for i in range(2):
        write("png10/c%d/%d.png" % (k, i), png(16, 20 * k + i))
write("trunc.png", png(16)[:50])
PY

# ---- the pipeline the later cases break ----------------------------------------
# The data sets the pipeline runs on.
setup ofa-data prepare idx -v 64 -q -o data.h5
setup ofa-data prepare idx -v 64 -s 1 -q -o data-seed1.h5
setup ofa-data prepare idx -v 64 -q --class-names a,b,c,d,e,f,g,h,i,j,k,l -o data12.h5
setup ofa-data prepare png10 -q -o data-notest.h5
"$PY" - <<'PY' || fail "could not damage the data.h5 copies"
data = open("data.h5", "rb").read()
open("data-truncated.h5", "wb").write(data[:60000])
d = bytearray(data); d[40000] ^= 0x55; open("data-crc.h5", "wb").write(bytes(d))
# renamed links: /train/labels and /test/labels are missing (the case
# h5-seal-missing seals the file)
open("data-nolabels.h5", "wb").write(data.replace(b"labels\0", b"lebals\0"))
open("data-tiny.h5", "wb").write(b"not a data set\n" * 6)
open("data-text.h5", "wb").write(b"OFA-DATA" + b"\0" * 504 + b"not HDF5 after the user block\n")
PY

# supernet.h5 (errors.ini), other.h5 (another space), subnet.h5 and model.h5
setup ofa-train -q -r errors.ini -d data.h5 -o supernet.h5
setup ofa-train -q -r tiny-override.ini -d data.h5 -o other.h5 --set train.epochs=1 \
    --set train.subset=32 --set train.calib_images=32
mkdir dev
setup ofa-extract -q -s supernet.h5 -d data.h5 -D tiny-mcu -o dev/subnet.h5
setup ofa-export -q -s supernet.h5 -n dev/subnet.h5 -d data.h5 -o dev
head -c 100000 supernet.h5 >supernet-truncated.h5
"$PY" -c 'import sys; d = bytearray(open(sys.argv[1], "rb").read()); d[60000] ^= 0x04; open(sys.argv[2], "wb").write(bytes(d))' \
    supernet.h5 supernet-crc.h5
cp "$S/tests/fixtures/data/fuzz-ckpt-libhdf5-accum-read-segv.h5" supernet-plain.h5
head -c 1000 dev/subnet.h5 >subnet-truncated.h5
head -c 30000 dev/model.h5 >model-truncated.h5
cp notes.txt notes.h5

# ---- recipe files ------------------------------------------------------------------
group "Recipe files (INI)"
R="recipe"
t recipe-syntax "$R" "line that is not [section] or key = value" ofa-train --print-recipe -r bad-syntax.ini
t recipe-unknown-key "$R" "unknown key (with a suggestion)" ofa-train --print-recipe -r bad-key.ini
t recipe-unknown-section "$R" "unknown section" ofa-train --print-recipe -r bad-section.ini
t recipe-key-before-section "$R" "key before any section" ofa-train --print-recipe -r bad-toplevel-key.ini
t recipe-bad-type "$R" "value of the wrong type" ofa-train --print-recipe -r bad-type.ini
t recipe-bad-bool "$R" "yes/no key with another value" ofa-train --print-recipe -r bad-bool.ini
t recipe-bad-enum "$R" "value not among the choices" ofa-train --print-recipe -r bad-enum.ini
t recipe-out-of-range "$R" "value out of range" ofa-train --print-recipe -r bad-range.ini
t recipe-list-order "$R" "list of choices not ascending" ofa-train --print-recipe -r bad-list-order.ini
t recipe-depth-too-large "$R" "depth choice larger than a stage can have" ofa-train --print-recipe -r bad-depth.ini
t recipe-even-kernel "$R" "even kernel size" ofa-train --print-recipe -r bad-even-kernel.ini
t recipe-stage-no-width "$R" "stage with no width" ofa-train --print-recipe -r bad-stage-no-width.ini
t recipe-stage-gap "$R" "stages not consecutive" ofa-train --print-recipe -r bad-stage-gap.ini
t recipe-stage-number "$R" "stage number beyond the maximum" ofa-train --print-recipe -r bad-stage-number.ini
t recipe-continuation "$R" "indented line (multi-line value)" ofa-train --print-recipe -r bad-continuation.ini
t recipe-cross "$R" "keys that contradict each other" ofa-train --print-recipe -r bad-cross.ini
t recipe-include-missing "$R" "include of a missing file" ofa-train --print-recipe -r bad-include-missing.ini
t recipe-include-loop "$R" "include loop" ofa-train --print-recipe -r bad-include-loop-a.ini
t recipe-include-error "$R" "error inside an included file" ofa-train --print-recipe -r bad-include-child.ini
t recipe-missing "$R" "recipe file missing" ofa-train --print-recipe -r no-such-recipe.ini
printf '[train]\nepochs = 3\0\n' >binary.ini
t recipe-binary "$R" "binary file (NUL byte)" ofa-train --print-recipe -r binary.ini
t recipe-device-name "$R" "device section with a bad name" ofa-train --print-recipe -r bad-device-name.ini
t recipe-opcount "$R" "opcount device without a_ms_per_mmac" ofa-train --print-recipe -r bad-opcount.ini
t recipe-lut-none "$R" "lut device without a table" ofa-train --print-recipe -r bad-lut-none.ini
R="\`--set\`"
t set-syntax "$R" "not SECTION.KEY=VALUE" ofa-train --print-recipe -r tiny.ini --set train.epochs
t set-unknown-key "$R" "unknown key" ofa-train --print-recipe -r tiny.ini --set train.epoch=3
t set-unknown-section "$R" "unknown section" ofa-train --print-recipe -r tiny.ini --set trian.epochs=3
t set-shards "$R" "batch not a multiple of train.shards" ofa-train --print-recipe -r tiny.ini --set train.shards=5
t set-bad-value "$R" "bad value" ofa-train --print-recipe -r tiny.ini --set train.lr=fast
t set-no-stage "$R" "stage the recipe does not have" ofa-train --print-recipe -r tiny.ini --set stage3.width=8
t set-no-device "$R" "device the recipe does not have" ofa-train --print-recipe -r tiny.ini --set device.board.flash_kb=64
t set-device-resolution "$R" "device resolution the supernet does not have" ofa-train -q -r errors.ini -d data.h5 -o s.h5 --set device.tiny-mcu.resolutions=20
t set-include "$R" "include" ofa-train --print-recipe -r tiny.ini --set train.include=x.ini
t set-export-only "$R" "a training key given to ofa-export" ofa-export -q -s supernet.h5 -n dev/subnet.h5 -d data.h5 -o dev --set train.epochs=3

# ---- command lines -------------------------------------------------------------------
group "Command lines"
t cli-unknown-option ofa-train "unknown option" ofa-train --frobnicate
t cli-missing-argument ofa-train "option without its argument" ofa-train -r
t cli-not-a-number ofa-train "non-numeric number" ofa-train --stop-after=ten
t cli-out-of-range ofa-train "number out of range" ofa-train -j 0
t cli-stray-argument ofa-train "unexpected operand" ofa-train -r tiny.ini -d data.h5 -o s.h5 extra
t cli-train-required ofa-train "missing required option" ofa-train -r tiny.ini
t cli-print-recipe ofa-train "\`--print-recipe\` without \`--recipe\`" ofa-train --print-recipe
t cli-resume-nothing ofa-train "\`--resume\` with nothing to resume" ofa-train --resume -d data.h5 -o s.h5
t cli-extract-required ofa-extract "missing required option" ofa-extract -s s.h5 -d data.h5
t cli-extract-samples ofa-extract "number out of range" ofa-extract --samples 5
t cli-extract-split ofa-extract "bad choice" ofa-extract --split train
t cli-extract-list ofa-extract "conflicting options" ofa-extract --list-devices -s s.h5 -r tiny-devices.ini
t cli-extract-evaluate ofa-extract "\`--evaluate\` without subnets" ofa-extract -s s.h5 -d data.h5 --evaluate
t cli-extract-measure ofa-extract "\`--measure-only\` without \`--data\`" ofa-extract -s s.h5 --measure-only
t cli-export-required ofa-export "missing required option" ofa-export -s s.h5 -d data.h5 -o .
t cli-run-arith ofa-run "bad choice" ofa-run --arith int4 model.h5 x.png
t cli-run-operands ofa-run "missing operand" ofa-run model.h5
t cli-run-split ofa-run "bad choice" ofa-run --split validation model.h5 data.h5
t cli-data-command ofa-data "unknown command" ofa-data convert idx
t cli-data-output ofa-data "missing required option" ofa-data prepare idx
t cli-data-option ofa-data "unknown option of a command" ofa-data prepare idx --frobnicate -o d.h5
t cli-data-format ofa-data "bad choice" ofa-data prepare idx -f mnist -o d.h5
t cli-data-val-size ofa-data "negative number" ofa-data prepare idx -v -5 -o d.h5
t cli-data-channels ofa-data "number out of range" ofa-data prepare idx -c 2 -o d.h5
t cli-data-size ofa-data "bad size" ofa-data prepare png-sizes --size 0x8 -o d.h5
t cli-data-class-names ofa-data "empty class name" ofa-data prepare idx --class-names a,,b -o d.h5
t cli-report ofa-report "not a run directory" ofa-report no-such-run

# ---- data sets -----------------------------------------------------------------------
group "Data set sources (\`ofa-data prepare\`)"
t src-missing "source" "missing directory" ofa-data prepare no-such-dir -o d.h5
t src-not-dir "source" "not a directory" ofa-data prepare notes.txt -o d.h5
t idx-magic IDX "bad magic" ofa-data prepare idx-magic -o d.h5
t idx-type IDX "element type other than unsigned byte" ofa-data prepare idx-type -o d.h5
t idx-rank IDX "wrong number of dimensions" ofa-data prepare idx-rank -o d.h5
t idx-zero IDX "zero dimension" ofa-data prepare idx-zero -o d.h5
t idx-truncated IDX "truncated" ofa-data prepare idx-truncated -o d.h5
t idx-trailing IDX "bytes after the data" ofa-data prepare idx-trailing -o d.h5
t idx-count IDX "label count differs from image count" ofa-data prepare idx-count -o d.h5
t idx-label IDX "label out of range" ofa-data prepare idx-label -o d.h5
t idx-sizes IDX "test images of another size" ofa-data prepare idx-sizes -o d.h5
t idx-missing IDX "file missing" ofa-data prepare idx-missing -o d.h5
t idx-val-size IDX "validation split larger than the training set" ofa-data prepare idx-sizes -v 20 -o d.h5
t gz-truncated "IDX, gzip" "truncated" ofa-data prepare gz-truncated -o d.h5
t gz-crc "IDX, gzip" "corrupt (CRC)" ofa-data prepare gz-crc -o d.h5
t gz-trailing "IDX, gzip" "garbage after the stream" ofa-data prepare gz-trailing -o d.h5
t cifar-size CIFAR-10 "size not a multiple of the record" ofa-data prepare cifar-size -o d.h5
t cifar-label CIFAR-10 "label out of range" ofa-data prepare cifar-label -o d.h5
t cifar100-coarse CIFAR-100 "coarse label out of range" ofa-data prepare cifar100-coarse -o d.h5
t png-notpng "PNG folder" "not a PNG" ofa-data prepare png-notpng -o d.h5
t png-truncated "PNG folder" "truncated PNG" ofa-data prepare png-truncated -o d.h5
t png-sizes "PNG folder" "images of different sizes" ofa-data prepare png-sizes -o d.h5
t png-empty "PNG folder" "empty class folder" ofa-data prepare png-empty -o d.h5
t png-stray "PNG folder" "file next to the class folders" ofa-data prepare png-stray -o d.h5
t png-nested "PNG folder" "folder inside a class folder" ofa-data prepare png-nested -o d.h5
t png-test-class "PNG folder" "test class missing from training" ofa-data prepare png-test -o d.h5
t png-none "PNG folder" "no class folders" ofa-data prepare png-none -o d.h5

group "data.h5"
t h5-missing data.h5 "missing file" ofa-data stats no-such.h5
t h5-tiny data.h5 "too small to be one" ofa-data stats data-tiny.h5
t h5-other data.h5 "HDF5 file that is not a data.h5 (a supernet.h5)" ofa-data stats supernet.h5
t h5-truncated data.h5 "truncated" ofa-data stats data-truncated.h5
t h5-crc data.h5 "checksum mismatch (damaged)" ofa-data stats data-crc.h5
t h5-seal-missing data.h5 "made by another tool, a dataset missing (\`seal\`)" ofa-data seal data-nolabels.h5
t h5-missing-dataset data.h5 "missing dataset" ofa-train -q -r errors.ini -d data-nolabels.h5 -o s.h5
t h5-seal-not-hdf5 data.h5 "not HDF5 after the user block (\`seal\`)" ofa-data seal data-text.h5
t h5-classes data.h5 "other number of classes than the recipe" ofa-train -q -r errors.ini -d data12.h5 -o s.h5
t h5-batch data.h5 "fewer images than a batch" ofa-train -q -r errors.ini -d data.h5 -o s.h5 --set train.subset=0 --set train.batch_size=512
t h5-export-png data.h5 "\`export-png\` into a folder that is not empty" ofa-data export-png data.h5 -o idx

group "Checkpoints (supernet.h5)"
C=supernet.h5
t ck-missing "$C" "missing file" ofa-extract -q -s no-such.h5 -d data.h5 -D tiny-mcu -o sub.h5
t ck-not-hdf5 "$C" "not HDF5" ofa-extract -q -s notes.h5 -d data.h5 -D tiny-mcu -o sub.h5
t ck-truncated "$C" "truncated" ofa-extract -q -s supernet-truncated.h5 -d data.h5 -D tiny-mcu -o sub.h5
t ck-crc "$C" "a changed byte (checksum mismatch)" ofa-extract -q -s supernet-crc.h5 -d data.h5 -D tiny-mcu -o sub.h5
t ck-plain "$C" "HDF5 without the integrity header (another tool's; this one crashes libhdf5 1.10)" ofa-extract -q -s supernet-plain.h5 -d data.h5 -D tiny-mcu -o sub.h5
t ck-model "$C" "not a checkpoint (a model.h5)" ofa-extract -q -s dev/model.h5 -d data.h5 -D tiny-mcu -o sub.h5
t ck-data "$C" "not a checkpoint (a data.h5)" ofa-export -q -s data.h5 -n dev/subnet.h5 -d data.h5 -o dev
cp other.h5 run.h5.part
t resume-other "$C" "\`--resume\`: another supernet's checkpoint" ofa-train -q --resume -r errors.ini -d data.h5 -o run.h5
cp supernet.h5 run.h5.part
t resume-recipe "$C" "\`--resume\`: recipe that trains differently" ofa-train -q --resume -r errors.ini -d data.h5 -o run.h5 --set train.lr=0.05
t resume-data "$C" "\`--resume\`: another data set (or split)" ofa-train -q --resume -d data-seed1.h5 -o run.h5
cp supernet-truncated.h5 run.h5.part
t resume-truncated "$C" "\`--resume\`: truncated checkpoint" ofa-train -q --resume -d data.h5 -o run.h5
rm -f run.h5.part
t ck-data-other "$C" "data set it was not trained on" ofa-extract -q -s supernet.h5 -d data-seed1.h5 -D tiny-mcu -o sub.h5
M="measurement cache"
t meas-line "$M" "malformed line" ofa-extract -q -s supernet.h5 -d data.h5 -D tiny-mcu -m bad-measurements.tsv -o sub.h5
t meas-accuracy "$M" "accuracy out of range" ofa-extract -q -s supernet.h5 -d data.h5 -D tiny-mcu -m bad-accuracy.tsv -o sub.h5
t meas-depth "$M" "subnet deeper than the depth choices" ofa-extract -q -s supernet.h5 -d data.h5 -D tiny-mcu -m bad-depth.tsv -o sub.h5
t meas-resolution "$M" "subnet at a resolution not among the choices" ofa-extract -q -s supernet.h5 -d data.h5 -D tiny-mcu -m bad-resolution.tsv -o sub.h5
t eval-depth "subnet text" "\`--evaluate\`: subnet text deeper than the depth choices" ofa-extract -q -s supernet.h5 -d data.h5 --evaluate r16-d32-k555.55-e333.33
t eval-name "subnet text" "\`--evaluate\`: not a subnet text nor a reference name" ofa-extract -q -s supernet.h5 -d data.h5 --evaluate biggest

group "Subnet and model files"
t subnet-other subnet.h5 "chosen from another supernet" ofa-export -q -s other.h5 -n dev/subnet.h5 -d data.h5 -o dev
t subnet-truncated subnet.h5 "truncated" ofa-export -q -s supernet.h5 -n subnet-truncated.h5 -d data.h5 -o dev
t subnet-not subnet.h5 "not a subnet file (a supernet.h5)" ofa-export -q -s supernet.h5 -n supernet.h5 -d data.h5 -o dev
t export-data-other subnet.h5 "data set the supernet was not trained on" ofa-export -q -s supernet.h5 -n dev/subnet.h5 -d data-seed1.h5 -o dev
t model-missing model.h5 "missing file" ofa-run no-such.h5 data.h5
t model-truncated model.h5 "truncated" ofa-run model-truncated.h5 data.h5
t model-not model.h5 "not a model (a supernet.h5)" ofa-run supernet.h5 data.h5
t run-channels "\`ofa-run\` input" "IDX images with other channels than the model" ofa-run dev/model.h5 rgb-images-idx3-ubyte
t run-classes "\`ofa-run\` input" "data.h5 with other classes than the model" ofa-run dev/model.h5 data12.h5
t run-no-test "\`ofa-run\` input" "data.h5 without a test split" ofa-run dev/model.h5 data-notest.h5
t run-not-image "\`ofa-run\` input" "neither PNG, IDX nor HDF5" ofa-run dev/model.h5 notes.txt
t run-truncated-png "\`ofa-run\` input" "truncated PNG" ofa-run dev/model.h5 trunc.png
cp "$S/tests/fixtures/data/fuzz-model-int8-dead-se-overflow.h5" model2ch.h5
t run-png-channels "\`ofa-run\` input" "PNG for a model of 2 input channels" ofa-run model2ch.h5 trunc.png
t run-missing "\`ofa-run\` input" "missing file" ofa-run dev/model.h5 no-such.png

group "Device profiles"
D="device"
t device-unknown "$D" "unknown device" ofa-extract -q -s supernet.h5 -d data.h5 -D board -o sub.h5
t device-unknown-r "$D" "unknown device in \`-r FILE\`" ofa-extract -q -s supernet.h5 -d data.h5 -r devices-bad.ini -D tiny-mcu -o sub.h5
t device-infeasible "$D" "budget no subnet meets" ofa-extract -q -s supernet.h5 -d data.h5 -r devices-bad.ini -D nano -o sub.h5
t lut-missing "latency table" "missing file" ofa-extract -q -s supernet.h5 -d data.h5 -r devices-bad.ini -D lut-missing -o sub.h5
t lut-header "latency table" "column missing from the header" ofa-extract -q -s supernet.h5 -d data.h5 -r devices-bad.ini -D lut-header -o sub.h5
t lut-fields "latency table" "row with too few fields" ofa-extract -q -s supernet.h5 -d data.h5 -r devices-bad.ini -D lut-fields -o sub.h5
t lut-rows "latency table" "no row for a block of the space" ofa-extract -q -s supernet.h5 -d data.h5 -r devices-bad.ini -D lut-rows -o sub.h5

group "Outputs and training"
t out-data-dir "output" "directory missing (\`ofa-data\`)" ofa-data prepare idx -q -o no-such-dir/data.h5
t out-train-dir "output" "directory missing (\`ofa-train\`)" ofa-train -q -r errors.ini -d data.h5 -o no-such-dir/supernet.h5
t out-extract-dir "output" "directory missing (\`ofa-extract\`)" ofa-extract -q -s supernet.h5 -d data.h5 -D tiny-mcu -o no-such-dir/subnet.h5
t out-export-dir "output" "directory missing (\`ofa-export\`)" ofa-export -q -s supernet.h5 -n dev/subnet.h5 -d data.h5 -o no-such-dir
t out-report "output" "run without an exported device (\`ofa-report\`)" ofa-report dev
# Divergence: learning rate 100 with weight decay 1 multiplies the weights by about -99 a
# step, so they overflow within a few steps whatever the rounding of the gradients (learning
# rate 100 alone diverged at a step that moved with the kernels' summation order).
t train-nan "training" "loss becomes NaN/Inf" ofa-train -q -r tiny.ini -d data.h5 -o nan.h5 --set train.epochs=3 --set train.subset=256 --set train.lr=100 --set train.final_lr=100 --set train.warmup_epochs=0 --set train.calib_images=32 --set train.weight_decay=1
t export-batch "export" "fewer training images than a batch of the stability pass" ofa-export -q -s supernet.h5 -n dev/subnet.h5 -d data.h5 -o dev --set export.epochs=1 --set export.subset=0 --set export.batch_size=512
t export-nan "export" "loss becomes NaN/Inf in the stability pass" ofa-export -q -s supernet.h5 -n dev/subnet.h5 -d data.h5 -o dev --set export.epochs=10 --set export.lr=100 --set export.subset=256 --set export.batch_size=32 --set export.fake_quant=no --set export.alpha=1000 --set export.weight_decay=1

# ---- compare -------------------------------------------------------------------------
[ $bad -eq 0 ] || fail "$bad problems (above)"
if [ $MODE = print ]; then
    cat "$TABLE"
    exit 0
fi
DOC=$S/docs/errors.md
[ -f "$DOC" ] || fail "$DOC is missing"
BEGIN='^<!-- BEGIN check_errors.sh'
END='^<!-- END check_errors.sh'
[ "$(grep -c "$BEGIN" "$DOC")" = 1 ] && [ "$(grep -c "$END" "$DOC")" = 1 ] ||
    fail "$DOC needs one BEGIN and one END marker line"
if [ $MODE = update ]; then
    { sed "/$BEGIN/q" "$DOC"; cat "$TABLE"; sed -n "/$END/,\$p" "$DOC"; } >.doc
    cp .doc "$DOC" || fail "could not write $DOC"
    echo "check_errors: wrote $(grep -c '^| `' "$TABLE") cases into $DOC"
    exit 0
fi
sed -n "/$BEGIN/,/$END/p" "$DOC" | sed '1d;$d' >.doc
if ! cmp -s .doc "$TABLE"; then
    diff -u .doc "$TABLE" | sed 's/^/    /' >&2
    fail "the messages differ from docs/errors.md (- doc, + now); if the change is" \
        "intended, regenerate the table: sh tests/check_errors.sh --update"
fi
echo "check_errors: ok ($(grep -c '^| `' "$TABLE") cases)"
