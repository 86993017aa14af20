# fashion-subset.sh (sourced by the shell tests):
#   need_fashion_mnist   exit 77 (skipped) when Debian's Fashion-MNIST is absent
#   need_h5diff          exit 77 when h5diff (hdf5-tools) is absent
#   fashion_subset DIR NTRAIN NTEST
#                        write its first images as IDX files into DIR
need_fashion_mnist() {
    if [ ! -d /usr/share/datasets/fashion-mnist ]; then
        echo "dataset-fashion-mnist is not installed: skipped"
        exit 77
    fi
}

need_h5diff() {
    command -v h5diff >/dev/null 2>&1 || { echo "h5diff (hdf5-tools) is missing: skipped"; exit 77; }
}

fashion_subset() {
    /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import gzip, struct, sys
src, out = "/usr/share/datasets/fashion-mnist", sys.argv[1]
for split, n in (("train", int(sys.argv[2])), ("t10k", int(sys.argv[3]))):
    for kind, hdr in (("images-idx3", 16), ("labels-idx1", 8)):
        name = "%s-%s-ubyte" % (split, kind)
        data = gzip.open("%s/%s.gz" % (src, name)).read()
        size = 784 if kind.startswith("images") else 1
        head = bytearray(data[:hdr])
        head[4:8] = struct.pack(">I", n)
        open("%s/%s" % (out, name), "wb").write(bytes(head) + data[hdr:hdr + n * size])
PY
}
