# fashion-subset.sh (sourced by the shell tests): fashion_subset DIR NTRAIN
# NTEST writes the first images of Debian's Fashion-MNIST as IDX files.
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
