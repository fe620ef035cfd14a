// Where each rank's share of a model lies, and the check that every rank opened the same file.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "model/source.h"

namespace owl::dist {

// Pipeline split: contiguous ranges [begin, end) of the trunk layers, one per rank, holding
// about equal shares of the weight bytes (rank 0 also holds the embedding and output head,
// which count towards its share). A rank may get no layer when there are more ranks than
// layers. `weights` (one per rank, positive) sizes the shares, e.g. by each host's memory.
std::vector<std::pair<int64_t, int64_t>> layer_ranges(const ModelSource& src, const std::vector<double>& weights);

// Pipeline split: the row ranges [begin, end) of a batch that travel the pipeline one after
// another. Every chunk of `chunk_rows` rows (what one process runs per pass) is cut further, at
// rows where the sequence changes, into up to `micro_batches` pieces of about equal rows, so that
// with several sequences in a step rank k works on piece i while rank k + 1 works on piece i - 1.
// A run of one sequence's rows is never cut (its attention then runs as in one process), so a
// batch of one sequence, or micro_batches <= 1, gives forward()'s chunks unchanged.
std::vector<std::pair<int64_t, int64_t>> pipeline_pieces(const std::vector<int32_t>& seq_ids, int64_t chunk_rows,
                                                         int64_t micro_batches);

// The size and a checksum of the head of a model file (GGUF: its first 16 MiB, which hold the
// metadata and tensor table), or of a Hugging Face folder's file list and config.json.
struct Fingerprint {
  uint64_t size = 0;
  uint64_t checksum = 0;
};
Fingerprint fingerprint(const std::string& path);

}  // namespace owl::dist
