/* fuzz_h5s.c: structure-aware libFuzzer target for the data.h5 validation.
 *
 * Byte-level mutations of an HDF5 file either fail the integrity header or,
 * once resealed, crash inside libhdf5 itself (upstream bugs), so they never
 * reach our checks. This target instead reads the input as a list of
 * decisions and writes a well-formed HDF5 file through the HDF5 API, in
 * memory: every attribute and dataset of the layout is present or absent,
 * of the right or a wrong type, of any rank and small shape, filled with
 * input bytes. The sealed image then goes to ofa_dataset_load_image, which
 * must reject or accept it without crashing, leaking or over-allocating.
 */
#include <config.h>

#include "data.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct in {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct in *in, unsigned mod)
{
    if (in->n == 0)
        return 0;
    unsigned v = *in->p++;
    in->n--;
    return v % mod;
}

static hid_t pick_type(struct in *in, int want_str)
{
    static const int n = 9;
    unsigned k = take(in, n);
    if (want_str && k == 0)
        k = 8;
    switch (k) {
    case 0: return H5Tcopy(H5T_STD_U8LE);
    case 1: return H5Tcopy(H5T_STD_I8LE);
    case 2: return H5Tcopy(H5T_STD_I16LE);
    case 3: return H5Tcopy(H5T_STD_I32LE);
    case 4: return H5Tcopy(H5T_STD_I64LE);
    case 5: return H5Tcopy(H5T_STD_U64LE);
    case 6: return H5Tcopy(H5T_IEEE_F32LE);
    case 7: return H5Tcopy(H5T_IEEE_F64LE);
    default: {
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 1 + take(in, 70));
        return t;
    }
    }
}

/* Fill buf (n bytes) from the input, cycling. */
static void fill(struct in *in, uint8_t *buf, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = in->n ? (uint8_t)take(in, 256) : (uint8_t)(i * 31);
}

/* Write a dataset or attribute `name` on loc. mode: 0 absent, 1 as our writer
 * would (type `good`, rank `rank`), 2 anything. */
static void put(struct in *in, hid_t loc, const char *name, int is_attr, hid_t good, int rank,
                const hsize_t *good_dims)
{
    unsigned mode = take(in, 4);
    if (mode == 0)
        return;
    hid_t t;
    int r;
    hsize_t d[4];
    if (mode == 1 || mode == 3) {
        t = H5Tcopy(good);
        r = rank;
        for (int i = 0; i < r; i++)
            d[i] = good_dims[i];
    } else {
        t = pick_type(in, 0);
        r = (int)take(in, 5);
        for (int i = 0; i < r; i++)
            d[i] = take(in, 6);
    }
    if (mode == 3 && r > 0)
        d[take(in, (unsigned)r)] = good_dims[0] + take(in, 3); /* near-miss shape */
    hid_t sp = r == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(r, d, NULL);
    size_t esz = H5Tget_size(t), cnt = 1;
    for (int i = 0; i < r; i++)
        cnt *= d[i];
    uint8_t *buf = malloc(esz * cnt + 1);
    fill(in, buf, esz * cnt);
    if (is_attr) {
        hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, t, buf);
            H5Aclose(a);
        }
    } else {
        hid_t ds = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (ds >= 0) {
            if (cnt)
                H5Dwrite(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            H5Dclose(ds);
        }
    }
    free(buf);
    H5Sclose(sp);
    H5Tclose(t);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
        init = 1;
    }
    struct in in = {data, size};
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    H5Pset_userblock(fcpl, 512);
    hid_t f = H5Fcreate("fuzz-h5s", H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (f < 0)
        return 0;
    hid_t s8 = H5Tcopy(H5T_C_S1);
    H5Tset_size(s8, 8);
    hid_t s64 = H5Tcopy(H5T_C_S1);
    H5Tset_size(s64, 64);
    unsigned N = 1 + take(&in, 6), NT = take(&in, 4), H = 1 + take(&in, 3), W = 1 + take(&in, 3),
             C = 1 + take(&in, 4), K = 1 + take(&in, 4), V = take(&in, N);
    hsize_t one[1] = {1}, dK[1] = {K}, dN[1] = {N}, dNT[1] = {NT}, dTr[1] = {N - V}, dV[1] = {V};
    hsize_t img[4] = {N, H, W, C}, timg[4] = {NT, H, W, C};
    if (take(&in, 8) == 0) {
        put(&in, f, "format", 1, s8, 0, one);
    } else {
        /* The right format string, so that the rest is reached. */
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2(f, "format", s8, sp, H5P_DEFAULT, H5P_DEFAULT);
        H5Awrite(a, s8, "ofa-data");
        H5Aclose(a);
        H5Sclose(sp);
    }
    put(&in, f, "format_version", 1, H5T_STD_I32LE, 0, one);
    put(&in, f, "source", 1, s8, 0, one);
    put(&in, f, "num_classes", 1, H5T_STD_I32LE, 0, one);
    put(&in, f, "split_seed", 1, H5T_STD_U64LE, 0, one);
    put(&in, f, "val_size", 1, H5T_STD_I32LE, 0, one);
    put(&in, f, "class_names", 0, s64, 1, dK);
    const char *groups[3] = {"train", "test", "split"};
    for (int g = 0; g < 3; g++) {
        if (take(&in, 8) == 0)
            continue;
        hid_t gr = H5Gcreate2(f, groups[g], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (gr < 0)
            continue;
        if (g == 0) {
            put(&in, gr, "images", 0, H5T_STD_U8LE, 4, img);
            put(&in, gr, "labels", 0, H5T_STD_I32LE, 1, dN);
        } else if (g == 1) {
            put(&in, gr, "images", 0, H5T_STD_U8LE, 4, timg);
            put(&in, gr, "labels", 0, H5T_STD_I32LE, 1, dNT);
        } else {
            put(&in, gr, "train", 0, H5T_STD_I32LE, 1, dTr);
            put(&in, gr, "val", 0, H5T_STD_I32LE, 1, dV);
        }
        H5Gclose(gr);
    }
    H5Tclose(s8);
    H5Tclose(s64);
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    /* The core driver's image leaves out the user block: put it back. */
    ssize_t m = H5Fget_file_image(f, NULL, 0);
    uint8_t *buf = m > 0 ? malloc((size_t)m + 512) : NULL;
    if (buf && H5Fget_file_image(f, buf + 512, (size_t)m) != m) {
        free(buf);
        buf = NULL;
    }
    H5Fclose(f);
    if (!buf)
        return 0;
    ssize_t n = m + 512;
    /* Seal: the integrity header of docs/data-format.md. */
    uLong crc = crc32(crc32(0, Z_NULL, 0), buf + 512, (uInt)((size_t)n - 512));
    memset(buf, 0, 512);
    memcpy(buf, "OFA-DATA", 8);
    buf[8] = 1;
    for (int i = 0; i < 4; i++)
        buf[12 + i] = (uint8_t)(crc >> (8 * i));
    for (int i = 0; i < 8; i++)
        buf[16 + i] = (uint8_t)((uint64_t)n >> (8 * i));
    struct ofa_error err;
    struct ofa_dataset ds;
    int rc = ofa_dataset_load_image(buf, (size_t)n, "fuzz", &ds, &err);
    if (getenv("OFA_FUZZ_VERBOSE")) /* to check what a seed reaches */
        fprintf(stderr, "load: %s\n", rc == 0 ? "accepted" : err.msg);
    if (rc == 0)
        ofa_dataset_free(&ds);
    free(buf);
    return 0;
}
