// The processes of one distributed run and the few ways they talk (MPI underneath when owl is
// built with it; see comm_mpi.cpp, and comm_nompi.cpp for the build without). Every wait has a
// deadline: a rank that stops answering ends the job with one line naming it and its host,
// instead of a hang.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace owl::dist {

class Comm {
 public:
  // The world of this process: MPI's when owl was launched by mpirun (MPI is initialised on the
  // first call), else this process alone (rank 0 of 1).
  static Comm& world();
  // Whether this build can run across processes.
  static bool built_with_mpi();

  virtual ~Comm() = default;
  int rank() const { return rank_; }
  int size() const { return size_; }
  // The host a rank runs on (gathered once, at start).
  const std::string& host(int rank) const { return hosts_[static_cast<size_t>(rank)]; }
  // "rank R (host H)", for messages.
  std::string who(int rank) const;

  // Seconds a rank waits for a peer inside a step before it ends the job (OWL_DIST_TIMEOUT,
  // default 600).
  double timeout_s() const { return timeout_s_; }

  // Rank 0's bytes to every rank. `idle`: the others may wait without a deadline (a server's
  // workers waiting for the next request), sleeping between polls.
  virtual void broadcast(void* data, size_t bytes, bool idle) = 0;
  // Point to point floats. Sends and receives are posted, then finished by wait_posted().
  virtual void post_send(const float* x, int64_t n, int to) = 0;
  virtual void post_receive(float* x, int64_t n, int from) = 0;
  virtual void wait_posted() = 0;
  // Every rank's `bytes` bytes, in rank order, into all (size() * bytes).
  virtual void all_gather(const void* mine, size_t bytes, void* all) = 0;
  // buf holds size() runs of floats, [first[r], first[r + 1]) being rank r's; on return every
  // rank holds all of them.
  virtual void all_gather_runs(float* buf, const std::vector<int64_t>& first) = 0;
  // Prints "owl: error: <message>" and ends every rank of the job (exit code 1).
  [[noreturn]] virtual void abort(const std::string& message) = 0;

 protected:
  int rank_ = 0, size_ = 1;
  std::vector<std::string> hosts_;
  double timeout_s_ = 600;
};

}  // namespace owl::dist
