#include "hub/download.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "base/error.h"
#include "hub/cache.h"
#include "hub/hash.h"
#include "hub/progress.h"

namespace fs = std::filesystem;

namespace owl::hub {
namespace {

struct Segment {
  uint64_t start = 0, end = 0;
  std::atomic<uint64_t> done{0};
  uint64_t remaining() const { return end - start - done.load(); }
};
using Segments = std::vector<std::unique_ptr<Segment>>;

// Holds an exclusive flock for the lifetime of the object.
class FileLock {
 public:
  FileLock(const std::string& path, const std::string& what, bool quiet) {
    fs::create_directories(fs::path(path).parent_path());
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw Error("cannot create lock file " + path + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) return;
    if (!quiet) std::fprintf(stderr, "owl: waiting for another download of %s to finish\n", what.c_str());
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) throw Error("cannot lock " + path + ": " + std::strerror(errno));
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

class Fd {
 public:
  explicit Fd(int fd) : fd(fd) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int fd;
};

uint64_t file_size_or_zero(const std::string& path) {
  std::error_code ec;
  auto n = fs::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(n);
}

bool load_ranges(const std::string& path, uint64_t size, Segments& out) {
  std::ifstream f(path);
  if (!f) return false;
  Segments segs;
  uint64_t s, e, d, covered = 0;
  while (f >> s >> e >> d) {
    if (e < s || d > e - s || s != covered) return false;  // must tile [0, size) in order
    auto seg = std::make_unique<Segment>();
    seg->start = s;
    seg->end = e;
    seg->done = d;
    covered = e;
    segs.push_back(std::move(seg));
  }
  if (covered != size || segs.empty()) return false;
  out = std::move(segs);
  return true;
}

// Segments cover [0, size) in order, so a finished prefix is a segment too.
void save_ranges(const std::string& path, const Segments& segs) {
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    for (const auto& s : segs) f << s->start << ' ' << s->end << ' ' << s->done.load() << '\n';
    if (!f) return;  // best effort: a stale ranges file only costs re-downloading
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
}

// Cuts the pending part of a single unfinished segment into `n` pieces.
void split_pending(Segments& segs, int n) {
  Segments out;
  for (auto& s : segs) {
    uint64_t from = s->start + s->done.load();
    if (s->done.load() > 0) {
      auto head = std::make_unique<Segment>();
      head->start = s->start;
      head->end = from;
      head->done = from - s->start;
      out.push_back(std::move(head));
    }
    uint64_t len = s->end - from;
    if (len == 0) continue;
    int pieces = static_cast<int>(std::min<uint64_t>(static_cast<uint64_t>(n), len));
    for (int i = 0; i < pieces; ++i) {
      auto p = std::make_unique<Segment>();
      p->start = from + len * static_cast<uint64_t>(i) / static_cast<uint64_t>(pieces);
      p->end = from + len * static_cast<uint64_t>(i + 1) / static_cast<uint64_t>(pieces);
      out.push_back(std::move(p));
    }
  }
  segs = std::move(out);
}

bool is_disk_full(int err) { return err == ENOSPC || err == EFBIG || err == EDQUOT; }

// What went wrong in the workers, first failure wins. A fatal failure (an
// HTTP error, a failed write) stops every worker; a connection that keeps
// dropping stops only its own range, so the others still save their bytes.
struct Failure {
  std::mutex m;
  std::string message;
  bool range_ignored = false;
  std::atomic<bool> any{false};
  std::atomic<bool> fatal{false};
  void set(const std::string& msg, bool is_fatal) {
    std::lock_guard<std::mutex> g(m);
    if (message.empty()) message = msg;
    any = true;
    if (is_fatal) fatal = true;
  }
};

// `hasher`, when set, receives the bytes in file order (one connection only).
void run_segment(const BlobDownload& d, const DownloadOptions& opt, int fd, Segment& seg, Failure& fail,
                 const std::string& incomplete, Sha256* hasher) {
  int failures_in_a_row = 0;
  while (seg.remaining() > 0 && !fail.fatal) {
    uint64_t before = seg.done.load();
    int write_errno = 0;
    StreamRequest req;
    req.url = d.url;
    req.headers = d.headers;
    req.offset = seg.start + seg.done.load();
    req.end = seg.end == d.size ? 0 : seg.end;  // the last range stays open-ended: "bytes=N-", or no Range at all
    req.on_data = [&](const char* p, size_t n) {
      if (fail.fatal) return false;
      uint64_t room = seg.remaining();
      if (n > room) n = static_cast<size_t>(room);  // a server sending more than asked is cut off
      while (n > 0) {
        ssize_t w = ::pwrite(fd, p, n, static_cast<off_t>(seg.start + seg.done.load()));
        if (w < 0) {
          if (errno == EINTR) continue;
          write_errno = errno;
          return false;
        }
        if (hasher) hasher->update(p, static_cast<size_t>(w));
        seg.done += static_cast<uint64_t>(w);
        p += w;
        n -= static_cast<size_t>(w);
      }
      return true;
    };
    StreamResult r = http_stream(req);
    if (write_errno) {
      std::string why = std::strerror(write_errno);
      fail.set(is_disk_full(write_errno) ? "disk full while writing " + incomplete + " (" + why +
                                               "); free space and run the pull again, it resumes"
                                         : "cannot write " + incomplete + ": " + why,
               true);
      return;
    }
    if (seg.remaining() == 0) return;
    if (r.complete) {
      fail.set("the server sent " + std::to_string(seg.start + seg.done.load()) + " bytes of " + d.display_name +
                   ", the hub lists " + std::to_string(d.size) + "; run the pull again later",
               true);
      return;
    }
    if (fail.fatal) return;
    if (r.range_ignored) {
      std::lock_guard<std::mutex> g(fail.m);
      fail.range_ignored = true;
      fail.any = true;
      fail.fatal = true;
      return;
    }
    bool http_error = r.status != 0 && r.status != 200 && r.status != 206;
    if (http_error && !is_transient(r.status)) {
      fail.set(d.describe_error ? d.describe_error(r.status, r.header("x-error-code"), r.error_body)
                                : d.display_name + ": HTTP " + std::to_string(r.status),
               true);
      return;
    }
    // Progress resets the count: a long download may survive many drops.
    failures_in_a_row = seg.done.load() > before ? 1 : failures_in_a_row + 1;
    if (failures_in_a_row > opt.retry.max_retries) {
      std::string why = http_error ? "HTTP " + std::to_string(r.status)
                                   : (r.network_error.empty() ? "connection lost" : r.network_error);
      if (http_error && d.describe_error) why = d.describe_error(r.status, r.header("x-error-code"), r.error_body);
      fail.set("download of " + d.display_name + " failed: " + why + "; run the pull again to resume (" +
                   human_size(file_size_or_zero(incomplete)) + " kept)",
               false);
      return;
    }
    sleep_s(retry_delay_s(r.headers, failures_in_a_row - 1, opt.retry));
  }
}

uint64_t remaining(const Segments& segs) {
  uint64_t left = 0;
  for (const auto& s : segs) left += s->remaining();
  return left;
}

// The ranges still to fetch: from the ranges file of an earlier multi-connection run, else what
// follows the incomplete file's bytes (a file longer than the blob starts over). In the first
// round a single unfinished range is split over the connections. `use_ranges`: a ranges file
// keeps track of them.
Segments plan_segments(const BlobDownload& d, const DownloadOptions& opt, const std::string& incomplete,
                       const std::string& ranges, bool first_round, bool& use_ranges) {
  Segments segs;
  use_ranges = load_ranges(ranges, d.size, segs);
  if (!use_ranges) {
    uint64_t have = file_size_or_zero(incomplete);
    if (have > d.size) have = 0;  // not a prefix of this blob
    auto s = std::make_unique<Segment>();
    s->end = d.size;
    s->done = have;
    segs.push_back(std::move(s));
    if (have == 0) std::ofstream(incomplete, std::ios::trunc | std::ios::binary);
  }
  const uint64_t pending = remaining(segs);
  if (opt.connections > 1 && pending >= opt.min_split_bytes && pending > 1 && first_round) {
    size_t unfinished = 0;
    for (const auto& s : segs) unfinished += s->remaining() > 0;
    if (unfinished == 1) split_pending(segs, opt.connections);
    use_ranges = segs.size() > 1;
  }
  return segs;
}

// Refuses early when the disk cannot hold what is left.
void check_disk_space(const BlobDownload& d, uint64_t pending) {
  struct statvfs vfs {};
  if (::statvfs(fs::path(d.blob_path).parent_path().c_str(), &vfs) != 0) return;
  uint64_t free_bytes = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize;
  if (free_bytes < pending)
    throw Error("not enough disk space for " + d.display_name + ": " + human_size(pending) + " needed, " +
                human_size(free_bytes) + " free in " + fs::path(d.blob_path).parent_path().string());
}

// Runs one worker per unfinished segment into `fd`, drawing progress and checkpointing the
// ranges (when `use_ranges`) while they run. Returns the bytes still missing.
uint64_t fetch_segments(const BlobDownload& d, const DownloadOptions& opt, int fd, Segments& segs, Failure& fail,
                        Progress& progress, const std::string& incomplete, const std::string& ranges, bool use_ranges,
                        Sha256* hasher) {
  std::vector<std::thread> workers;
  for (auto& s : segs)
    if (s->remaining() > 0)
      workers.emplace_back(run_segment, std::cref(d), std::cref(opt), fd, std::ref(*s), std::ref(fail),
                           std::cref(incomplete), hasher);
  std::mutex done_mu;
  std::condition_variable done_cv;
  bool all_done = false;
  std::thread joiner([&] {
    for (auto& w : workers) w.join();
    std::lock_guard<std::mutex> g(done_mu);
    all_done = true;
    done_cv.notify_one();
  });
  auto last_save = std::chrono::steady_clock::now();
  for (;;) {
    {
      std::unique_lock<std::mutex> g(done_mu);
      if (done_cv.wait_for(g, std::chrono::milliseconds(50), [&] { return all_done; })) break;
    }
    progress.update(d.size - remaining(segs));
    if (use_ranges && std::chrono::steady_clock::now() - last_save > std::chrono::milliseconds(500)) {
      save_ranges(ranges, segs);
      last_save = std::chrono::steady_clock::now();
    }
  }
  joiner.join();
  const uint64_t left = remaining(segs);
  progress.update(d.size - left);
  if (use_ranges) save_ranges(ranges, segs);
  return left;
}

// Checks the finished file's size and checksum, then makes it the blob. A partial or corrupt
// file must never become the blob: it is discarded with an error.
void verify_and_install(const BlobDownload& d, const std::string& incomplete, const std::string& ranges,
                        Sha256* hasher) {
  uint64_t got_size = file_size_or_zero(incomplete);
  std::string got, expected, algo;
  if (!d.sha256.empty()) {
    algo = "sha256";
    expected = d.sha256;
    got = hasher ? hasher->hex_digest() : sha256_file(incomplete);
  } else if (!d.git_oid.empty()) {
    algo = "git sha1";
    expected = d.git_oid;
    got = git_blob_sha1_file(incomplete);
  }
  if (got_size != d.size || got != expected) {
    std::error_code ec;
    fs::remove(incomplete, ec);
    fs::remove(ranges, ec);
    if (got_size != d.size)
      throw Error("download of " + d.display_name + " has " + std::to_string(got_size) + " bytes, expected " +
                  std::to_string(d.size) + "; it was discarded, run the pull again");
    throw Error("checksum mismatch for " + d.display_name + ": expected " + algo + " " + expected + ", got " + got +
                "; the download was discarded, run the pull again");
  }
  fs::rename(incomplete, d.blob_path);
  std::error_code ec;
  fs::remove(ranges, ec);
}

}  // namespace

DownloadStats download_blob(const BlobDownload& d, const DownloadOptions& opt) {
  DownloadStats stats;
  auto complete = [&] { return fs::exists(d.blob_path) && file_size_or_zero(d.blob_path) == d.size; };
  if (complete()) return stats;
  fs::create_directories(fs::path(d.blob_path).parent_path());
  FileLock lock(d.lock_path, d.display_name, opt.quiet);
  if (complete()) return stats;  // another process finished it while we waited

  const std::string incomplete = d.blob_path + ".incomplete";
  const std::string ranges = incomplete + ".ranges";
  auto t0 = std::chrono::steady_clock::now();
  // On one connection the SHA-256 is computed while the bytes arrive, so that
  // verifying a large file costs no second pass over it.
  std::unique_ptr<Sha256> hasher;

  for (int round = 0;; ++round) {
    bool use_ranges = false;
    Segments segs = plan_segments(d, opt, incomplete, ranges, round == 0, use_ranges);
    const uint64_t pending = remaining(segs);
    check_disk_space(d, pending);

    hasher.reset();
    if (!d.sha256.empty() && !use_ranges && segs.size() == 1) {
      hasher = std::make_unique<Sha256>();
      if (hasher->update_from_file(incomplete, segs[0]->done.load()) < segs[0]->done.load())
        throw Error("cannot read " + incomplete + ": it shrank while resuming");
    }

    Fd fd(::open(incomplete.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    if (fd.fd < 0) throw Error("cannot open " + incomplete + ": " + std::strerror(errno));
    if (use_ranges) save_ranges(ranges, segs);

    Failure fail;
    Progress progress(d.display_name, d.size, d.size - pending, opt.quiet);
    const uint64_t left =
        fetch_segments(d, opt, fd.fd, segs, fail, progress, incomplete, ranges, use_ranges, hasher.get());
    stats.bytes += pending - left;

    if (fail.range_ignored && round == 0) {
      // The server sends whole files only: start over on one connection.
      progress.finish(false);
      std::error_code ec;
      fs::remove(ranges, ec);
      std::ofstream(incomplete, std::ios::trunc | std::ios::binary);
      continue;
    }
    if (fail.any || left > 0) {
      progress.finish(false);
      throw Error(fail.message.empty()
                      ? "download of " + d.display_name + " did not finish; run the pull again to resume"
                      : fail.message);
    }
    progress.finish(true);
    break;
  }

  verify_and_install(d, incomplete, ranges, hasher.get());
  stats.downloaded = true;
  stats.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return stats;
}

}  // namespace owl::hub
