// This process alone: rank 0 of 1 (a plain run, or any run of the build without MPI).
#pragma once
#include "dist/comm.h"

namespace owl::dist {

class LocalComm final : public Comm {
 public:
  LocalComm();
  void broadcast(void*, size_t, bool) override {}
  void post_send(const float*, int64_t, int) override;
  void post_receive(float*, int64_t, int) override;
  void wait_posted() override {}
  void all_gather(const void* mine, size_t bytes, void* all) override;
  void all_gather_runs(float*, const std::vector<int64_t>&) override {}
  [[noreturn]] void abort(const std::string& message) override;
};

}  // namespace owl::dist
