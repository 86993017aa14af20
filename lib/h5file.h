/* h5file.h: what every HDF5 file of ofa shares (data.h5, supernet.h5,
 * subnet.h5, model.h5).
 *
 * The integrity header. The first 512 bytes of each file are its HDF5 user
 * block (ignored by HDF5, h5dump and h5py), which holds
 *   magic (8 bytes) | u32 version (1) | u32 CRC-32 | u64 file size | zeros
 * (checked to be zeros)
 * (little-endian), the CRC-32 (zlib's) covering every byte after the user
 * block. Loaders check it before libhdf5 parses a byte: libhdf5 1.10 has
 * memory-safety bugs on damaged files (fuzzing found a heap overflow, a
 * use-after-free and a SEGV in it), so a truncated or corrupted file must
 * never reach it. The magic tells our files from others: "OFA-DATA" for
 * data.h5, "OFA-HDF5" for the other three (their root attribute "format"
 * then says which).
 *
 * Writing: the file is built in memory (HDF5's core driver, no backing
 * store) and written by us, atomically (ofa_atomic_open): HDF5 never meets
 * an I/O error (its failure paths leave files open), and a full disk is
 * reported with its errno while the previous file stays intact.
 */
#ifndef OFA_H5FILE_H
#define OFA_H5FILE_H

#include <hdf5.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define OFA_H5_UB_SIZE 512
#define OFA_H5_MAGIC_DATA "OFA-DATA"
#define OFA_H5_MAGIC "OFA-HDF5"

/* Write the header of an image whose first OFA_H5_UB_SIZE bytes are the
 * user block (len >= OFA_H5_UB_SIZE). */
void ofa_h5_header_fill(uint8_t *image, size_t len, const char *magic);
/* Check the header of an image in memory. what: the kind of file, for
 * messages ("an ofa supernet checkpoint"). */
int ofa_h5_header_check_image(const uint8_t *image, size_t len, const char *magic,
                              const char *what, const char *name, struct ofa_error *err);
/* The same for an open file, read in 1 MiB pieces (data.h5 can be large). */
int ofa_h5_header_check_fd(int fd, const char *magic, const char *what, const char *name,
                           struct ofa_error *err);
/* Write the header of the file at path, whose first OFA_H5_UB_SIZE bytes
 * must be an HDF5 user block (the file is made by another tool). */
int ofa_h5_header_seal(const char *path, const char *magic, struct ofa_error *err);

/* Build a file with build(f, arg) in memory (user block reserved, no object
 * time stamps, so the same content gives the same bytes) and write it with
 * its header to path atomically. step: the in-memory image's growth step
 * (about the expected size). build reports its own errors in err. */
typedef int (*ofa_h5_build_fn)(hid_t f, const void *arg);
int ofa_h5_save(const char *path, const char *magic, size_t step, ofa_h5_build_fn build,
                const void *arg, struct ofa_error *err);

/* Read the file at path (at most max_bytes), check its header and open it
 * read-only from memory. Returns the file id, or -1 with err set. */
hid_t ofa_h5_open(const char *path, const char *magic, const char *what, size_t max_bytes,
                  struct ofa_error *err);

/* Run a loader of the file at path in a child process first, then, if the
 * child ended normally (loaded it or refused it), in this process: load(arg)'s
 * result is returned. A file whose header is right but whose HDF5 content
 * is crafted (the header is a checksum, not a signature) can still crash
 * libhdf5 1.10 (tests/fuzz/README.md); the crash then happens in the child
 * and becomes an error naming the file. The child's work is thrown away
 * (copy-on-write memory): load may fill the caller's buffers. Without fork
 * (or with ofa_h5_guard_set(0): fuzz targets, to see crashes), load just
 * runs. Call it before starting threads of your own: a thread holding a
 * lock (an allocator's: ASan's is not fork-safe) at the fork leaves the
 * child waiting for it forever. */
int ofa_h5_guarded(const char *path, int (*load)(void *arg), void *arg, struct ofa_error *err);
void ofa_h5_guard_set(int on);

/* HDF5's automatic error printing off (on) for the duration of a call. */
struct ofa_h5quiet {
    H5E_auto2_t fn;
    void *data;
};
void ofa_h5_quiet_on(struct ofa_h5quiet *q);
void ofa_h5_quiet_off(const struct ofa_h5quiet *q);

/* err = path + message, plus the innermost message on HDF5's error stack if
 * the last HDF5 call failed (call it right after the failing call: every
 * HDF5 API call clears the stack on entry). Returns -1. */
int ofa_h5_fail(struct ofa_error *err, const char *path, const char *fmt, ...)
    OFA_PRINTF(3, 4);
int ofa_h5_vfail(struct ofa_error *err, const char *path, const char *fmt, va_list ap);

/* H5Idec_ref of an id that may be -1. */
void ofa_h5_close_id(hid_t id);

#endif
