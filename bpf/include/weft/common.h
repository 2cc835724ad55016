/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Types every weft program and map layout shares. Only UAPI headers and libbpf's
 * bpf_helpers.h/bpf_endian.h: no vmlinux.h, so the objects build from Debian's packages alone.
 */
#ifndef WEFT_COMMON_H
#define WEFT_COMMON_H

#include <linux/types.h>
#include <stdbool.h>

/* An IPv6 address as the kernel stores it: 16 bytes in network order, 4-byte aligned. */
union v6addr {
	__u8 addr[16];
	__be32 p[4];
};

#define WEFT_NSEC_PER_SEC 1000000000ULL

/*
 * Layouts are part of the ABI between the programs, the pinned maps (which outlive any one
 * agent) and the TypeScript codecs: a change here changes a size or an offset, which the
 * kernel test that compares BTF with src/datapath/lbmap.ts catches.
 */
#define WEFT_ASSERT_SIZE(type, size) _Static_assert(sizeof(type) == (size), #type " must be " #size " bytes")

#endif /* WEFT_COMMON_H */
