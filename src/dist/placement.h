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

// The size and a checksum of the head of a model file (GGUF: its first 16 MiB, which hold the
// metadata and tensor table), or of a Hugging Face folder's file list and config.json.
struct Fingerprint {
  uint64_t size = 0;
  uint64_t checksum = 0;
};
Fingerprint fingerprint(const std::string& path);

}  // namespace owl::dist
