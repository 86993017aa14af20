#!/bin/sh
# quickstart.sh: set up a fresh Debian 12 machine and build, test or run ofa.
#
#   ./quickstart.sh run    install dependencies, build, and run the quick pipeline on
#                          Fashion-MNIST: train, choose a subnet per device profile,
#                          export each to int8 (model.h5, model.onnx, model.c, card.md)
#                          and write report.md, into runs/quick (RUN=dir to change)
#   ./quickstart.sh test   install dependencies, build, run the test suite
#   ./quickstart.sh deps   install dependencies only (needs root or sudo)
#
# Packages are installed only when missing; everything comes from Debian.
set -eu

PACKAGES="build-essential autoconf automake autoconf-archive pkg-config
  libopenblas-openmp-dev libhdf5-dev hdf5-tools libpng-dev zlib1g-dev check
  libinih-dev libturbojpeg0-dev dataset-fashion-mnist
  libprotobuf-c-dev protobuf-c-compiler libonnx-dev
  python3-onnx python3-opencv python3-numpy gnuplot-nox help2man"

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
    # The whole pipeline on the quick recipe: data, supernet training, one
    # subnet per device profile, its int8 export and the run's report
    # (recipes/pipeline.mk; an interrupted run resumes where it stopped).
    RUN=${RUN:-runs/quick}
    make -f recipes/quick.mk -j"$JOBS" RUN="$RUN"
    echo "quickstart: report $RUN/report.md; per-device models in $RUN/devices/*/"
    ;;
*)
    echo "usage: $0 run|test|deps" >&2
    exit 2
    ;;
esac
