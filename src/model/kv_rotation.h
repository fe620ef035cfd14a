// Rotating keys and values before a quantised KV cache stores them. An orthonormal
// Walsh-Hadamard transform H (H = H^T, H H = I) spreads a head's few large channels over all of
// a 32-value block, so the block's scale fits the rest of its values too and Q8_0/Q4_0 lose less.
// Attention is unchanged in exact arithmetic: scores use (H q)·(H k) = q·k, and the output of
// attending over H v is H times the output over v, so one more H restores it. llama.cpp does the
// same for quantised caches (head dims that are multiples of 64; docs/BENCHMARKS.md, "Quantised KV
// cache"); owl applies it wherever a head holds a power-of-two multiple of 32 values.
#pragma once
#include <cstdint>

#include "tensor/dtype.h"

namespace owl {

// The rotation block for heads of head_dim values in a cache of type t: the largest power of two
// (at least 32) dividing head_dim, or 0 for no rotation (an F16/F32 cache, or a head dim that is
// not a multiple of 32).
int64_t kv_rotation_block(DType t, int64_t head_dim);

// x[0..n) <- H x, H the orthonormal Walsh-Hadamard matrix of size `block` applied to each run of
// `block` consecutive values (n a multiple of block, block a power of two): the butterflies of the
// fast transform in place, the same floats on every ISA (kernels::hadamard_blocks).
void hadamard_blocks(float* x, int64_t n, int64_t block);

}  // namespace owl
