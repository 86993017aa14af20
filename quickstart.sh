#!/bin/sh
# quickstart.sh: set up a fresh Debian 12 machine and build, test or run ofa.
#
#   ./quickstart.sh run    install dependencies, build, prepare Fashion-MNIST, train
#                          the quick recipe and choose a subnet per device profile,
#                          into runs/quick (RUN=dir to change)
#   ./quickstart.sh test   install dependencies, build, run the test suite
#   ./quickstart.sh deps   install dependencies only (needs root or sudo)
#
# Packages are installed only when missing; everything comes from Debian.
set -eu

PACKAGES="build-essential autoconf automake autoconf-archive pkg-config
  libopenblas-openmp-dev libhdf5-dev hdf5-tools libpng-dev zlib1g-dev check
  libinih-dev libturbojpeg0-dev dataset-fashion-mnist
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev
  python3-onnx python3-opencv python3-numpy"

cd "$(dirname "$0")"
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}

deps() {
    missing=
    for p in $PACKAGES; do
        dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    echo "quickstart: installing:$missing"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

build() {
    [ -x configure ] || autoreconf -fi
    [ -f Makefile ] || ./configure
    make -j"$JOBS"
}

case "${1:-}" in
deps) deps ;;
test)
    deps
    build
    make -j"$JOBS" check
    ;;
run)
    deps
    build
    # The pipeline as far as it is built: data, supernet training on the
    # quick recipe, then one subnet per device profile (export is not built
    # yet).
    RUN=${RUN:-runs/quick}
    mkdir -p "$RUN"
    [ -f "$RUN/data.h5" ] || datasets/ofa-data prepare fashion-mnist -o "$RUN/data.h5"
    if [ -f "$RUN/supernet.h5.part" ]; then
        train/ofa-train --resume -d "$RUN/data.h5" -o "$RUN/supernet.h5"
    elif [ ! -f "$RUN/supernet.h5" ]; then
        train/ofa-train -r recipes/quick.ini -d "$RUN/data.h5" -o "$RUN/supernet.h5"
    fi
    for dev in $(extract/ofa-extract --list-devices -s "$RUN/supernet.h5"); do
        [ -f "$RUN/devices/$dev/subnet.h5" ] && continue
        mkdir -p "$RUN/devices/$dev"
        extract/ofa-extract -s "$RUN/supernet.h5" -d "$RUN/data.h5" -D "$dev" \
            -o "$RUN/devices/$dev/subnet.h5" --samples 60 --generations 200
    done
    echo "quickstart: supernet $RUN/supernet.h5 (log $RUN/supernet.tsv);" \
        "per-device subnets: $RUN/devices/*/subnet.txt"
    ;;
*)
    echo "usage: $0 run|test|deps" >&2
    exit 2
    ;;
esac
