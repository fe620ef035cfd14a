// How much memory the process may use, and the --mem SIZE option's syntax. The default budget
// is what the machine lets this process have (the tightest memory cgroup limit above it, v1 or
// v2, or MemAvailable when that is lower) minus a margin for what the weight budget does not
// cover: the KV cache, activations, the tokenizer and the program itself.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

namespace owl {

// "64G", "512MiB", "1.5g", "300000000": bytes (K/M/G/T are powers of 1024, with or without
// "iB"/"B"). Anything else (negative, empty, unknown suffix, zero) is an owl::UsageError.
uint64_t parse_memory_size(const std::string& text, const std::string& option = "--mem");
// "1.50 GiB", "640.0 MiB" for messages.
std::string format_memory_size(uint64_t bytes);

// The lowest memory limit of this process's cgroup and its ancestors (v2 memory.max, v1
// memory.limit_in_bytes), or nullopt when none is set.
std::optional<uint64_t> cgroup_memory_limit();
// MemAvailable of /proc/meminfo (0 when unreadable).
uint64_t memory_available();

// The default --mem: min(cgroup limit, MemAvailable) minus a margin of 32 MiB + 1/16 of it (at
// most 4 GiB).
struct MemoryBudget {
  uint64_t bytes = 0;
  std::string source;  // "--mem", "cgroup limit", "MemAvailable"
};
MemoryBudget default_memory_budget();

}  // namespace owl
