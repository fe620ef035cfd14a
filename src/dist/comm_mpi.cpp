// The MPI world of a run launched by mpirun. MPI calls return their errors (MPI_ERRORS_RETURN)
// and every wait polls with a deadline, so a dead or stuck peer ends the job with one line that
// names it; idle waits (a server between requests) sleep between polls instead of spinning.
#include <mpi.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "base/error.h"
#include "dist/local_comm.h"

namespace owl::dist {
namespace {

// Launched by mpirun (Open MPI, or a PMI launcher): only then is MPI initialised, so a plain
// `owl` run never pays for it.
bool launched_by_mpirun() {
  return std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK");
}

class MpiComm final : public Comm {
 public:
  MpiComm() {
    int provided = 0;
    // The engine's scheduler thread makes the calls, one at a time.
    MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided);
    MPI_Comm_dup(MPI_COMM_WORLD, &comm_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    if (const char* t = std::getenv("OWL_DIST_TIMEOUT")) timeout_s_ = std::atof(t) > 0 ? std::atof(t) : timeout_s_;
    char name[MPI_MAX_PROCESSOR_NAME] = {};
    int len = 0;
    MPI_Get_processor_name(name, &len);
    std::vector<char> all(static_cast<size_t>(size_) * MPI_MAX_PROCESSOR_NAME);
    check(MPI_Allgather(name, MPI_MAX_PROCESSOR_NAME, MPI_CHAR, all.data(), MPI_MAX_PROCESSOR_NAME, MPI_CHAR, comm_),
          "gathering the host names");
    for (int r = 0; r < size_; ++r) hosts_.emplace_back(all.data() + static_cast<size_t>(r) * MPI_MAX_PROCESSOR_NAME);
    std::atexit([] { MPI_Finalize(); });
  }

  void broadcast(void* data, size_t bytes, bool idle) override {
    if (bytes == 0) return;
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, 0, comm_, &req), "broadcasting a step");
    wait(&req, 1, idle, rank_ == 0 ? "a step's broadcast" : "rank 0's next step", 0);
  }

  void post_send(const float* x, int64_t n, int to) override {
    posted_.emplace_back();
    peers_.push_back(to);
    check(MPI_Isend(x, static_cast<int>(n), MPI_FLOAT, to, kTag, comm_, &posted_.back()), "sending activations");
  }
  void post_receive(float* x, int64_t n, int from) override {
    posted_.emplace_back();
    peers_.push_back(from);
    check(MPI_Irecv(x, static_cast<int>(n), MPI_FLOAT, from, kTag, comm_, &posted_.back()), "receiving activations");
  }
  void wait_posted() override {
    // One at a time, so that a timeout names the peer that did not answer.
    for (size_t i = 0; i < posted_.size(); ++i) wait(&posted_[i], 1, false, "activations", peers_[i]);
    posted_.clear();
    peers_.clear();
  }

  void all_gather(const void* mine, size_t bytes, void* all) override {
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Iallgather(mine, static_cast<int>(bytes), MPI_BYTE, all, static_cast<int>(bytes), MPI_BYTE, comm_, &req),
          "gathering");
    wait(&req, 1, false, "a gather", -1);
  }

  void all_gather_runs(float* buf, const std::vector<int64_t>& first) override {
    counts_.resize(static_cast<size_t>(size_));
    displs_.resize(static_cast<size_t>(size_));
    for (int r = 0; r < size_; ++r) {
      counts_[r] = static_cast<int>(first[r + 1] - first[r]);
      displs_[r] = static_cast<int>(first[r]);
    }
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Iallgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, buf, counts_.data(), displs_.data(), MPI_FLOAT, comm_, &req),
          "exchanging expert rows");
    wait(&req, 1, false, "expert rows", -1);
  }

  [[noreturn]] void abort(const std::string& message) override {
    std::fprintf(stderr, "owl: error: %s\n", message.c_str());
    std::fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, 1);
    std::_Exit(1);
  }

 private:
  static constexpr int kTag = 7;

  void check(int rc, const char* what) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {};
    int len = 0;
    MPI_Error_string(rc, text, &len);
    abort(who(rank_) + ": MPI failed " + what + ": " + text);
  }

  // Polls until the requests finish. Inside a step a peer has timeout_s() to answer; `peer` is
  // the rank waited for (-1: a collective, any of them).
  void wait(MPI_Request* reqs, int n, bool idle, const char* what, int peer) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    const auto deadline = start + std::chrono::duration<double>(timeout_s_);
    for (long polls = 0;; ++polls) {
      int done = 0;
      check(MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE), what);
      if (done) return;
      // Spin briefly (a decode step's activations arrive within microseconds), then sleep.
      if (polls > 2000 && polls % 64 == 0) std::this_thread::sleep_for(std::chrono::microseconds(idle ? 1000 : 50));
      if (!idle && Clock::now() > deadline) {
        const std::string from = peer >= 0 ? who(peer) : std::string("a rank");
        abort(who(rank_) + " waited " + std::to_string(static_cast<int>(timeout_s_)) + " s for " + what + " from " +
              from + "; it died or stopped answering (OWL_DIST_TIMEOUT sets the limit)");
      }
    }
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::vector<MPI_Request> posted_;
  std::vector<int> peers_;
  std::vector<int> counts_, displs_;
};

}  // namespace

bool Comm::built_with_mpi() { return true; }

Comm& Comm::world() {
  static std::unique_ptr<Comm> c =
      launched_by_mpirun() ? std::unique_ptr<Comm>(new MpiComm) : std::unique_ptr<Comm>(new LocalComm);
  return *c;
}

}  // namespace owl::dist
