// Importance matrices: per weight tensor, per input column, the sum of the squared activations
// that met that column during a calibration run (per expert for a 3-D expert stack, counting only
// the tokens routed to it), and how many rows were summed. The quantisers of the low-bit types
// weigh each element's error by its column's mean (tensor/quants.h, quantize_weight_row).
//
// Two file formats, both llama.cpp's:
//  * GGUF (llama-imatrix today): general.type "imatrix", imatrix.datasets (string array),
//    imatrix.chunk_count and imatrix.chunk_size (u32); per weight W two F32 tensors,
//    "W.in_sum2" with ne {n_cols, n_mat} (the raw sums) and "W.counts" with ne {1, n_mat}.
//  * legacy ".dat": int32 n_entries; per entry int32 name length, the name, int32 ncall,
//    int32 n_values, n_values float32 (per-column means scaled by ncall; n_cols * n_mat values
//    for a stack); optionally int32 chunk count, int32 length and the dataset name.
// read_imatrix tells them apart by the GGUF magic.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tensor/tensor.h"

namespace owl {

struct ImatrixEntry {
  int64_t n_cols = 0;          // 0 in a legacy file, which does not say how a stack's values split
  std::vector<float> sums;     // n_mat * n_cols: matrix m's columns at [m * n_cols, (m + 1) * n_cols)
  std::vector<double> counts;  // rows summed, per matrix (legacy files: one ncall for all)
};

struct Imatrix {
  std::map<std::string, ImatrixEntry> entries;  // by weight tensor name ("blk.0.attn_q.weight")
  std::vector<std::string> datasets;
  int64_t chunk_count = 0, chunk_size = 0;

  // The importance of each column of matrix `mat` of tensor `name` (n_cols values: sum / count;
  // all 1 for an expert no token was routed to), or an empty vector when the file has no entry.
  // row_len: the weight's row length (its column count).
  std::vector<float> weights(const std::string& name, int64_t mat, int64_t row_len) const;
};

// Reads either format; throws owl::Error with the file name and what is wrong (bad magic, a
// truncated entry, sums without counts, non-F32 tensors, sizes that do not match).
Imatrix read_imatrix(const std::string& path);
// Writes the GGUF format (atomically).
void write_imatrix(const Imatrix& m, const std::string& path);

// Checks that every entry names a tensor of the model (tensors: the model's, name and ne are used)
// whose row length is the entry's column count and whose matrix count (ne[2] of an expert stack,
// else 1) is the entry's. Entries for tensors that are not matmul weights (a router, ffn_gate_inp)
// are checked the same way. Throws owl::Error naming the first mismatch.
void check_imatrix(const Imatrix& m, const std::vector<TensorView>& tensors, const std::string& label);

}  // namespace owl
