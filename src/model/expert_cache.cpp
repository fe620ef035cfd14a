#include "model/expert_cache.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/scratch.h"

namespace owl {

namespace {

constexpr uint64_t kAlign = 4096;  // O_DIRECT: offsets, lengths and buffers aligned to this

uint64_t round_down(uint64_t v, uint64_t a) { return v / a * a; }
uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

uint8_t* map_slot(size_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED)
    throw Error("expert cache: cannot allocate " + std::to_string(bytes >> 10) + " KiB for an expert; lower --mem");
  return static_cast<uint8_t*>(p);
}

// Reads the first block through fd; O_DIRECT is refused by some file systems (tmpfs) only then.
bool direct_reads_work(int fd) {
  void* buf = std::aligned_alloc(kAlign, kAlign);
  const bool ok = buf && ::pread(fd, buf, kAlign, 0) >= 0;
  std::free(buf);
  return ok;
}

}  // namespace

ExpertCache::ExpertCache(const std::string& path, uint64_t capacity, const kernels::PrepareOptions& prepare,
                         int64_t n_layer, int64_t n_expert, int n_io_threads)
    : path_(path), capacity_(capacity), prepare_(prepare), n_layer_(n_layer), n_expert_(n_expert) {
  prepare_.release_source = false;  // the sources are read buffers, not the file mapping
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT);
  direct_ = fd_ >= 0 && direct_reads_work(fd_);
  if (fd_ >= 0 && !direct_) ::close(fd_);
  if (!direct_) fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) throw Error("expert cache: cannot open '" + path + "': " + std::strerror(errno));
  layers_.resize(static_cast<size_t>(n_layer));
  entries_.resize(static_cast<size_t>(n_layer * n_expert));
  for (int i = 0; i < std::max(1, n_io_threads); ++i) threads_.emplace_back([this] { io_thread(); });
}

ExpertCache::~ExpertCache() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (auto& t : threads_) t.join();
  for (Entry& en : entries_)
    if (en.slot) ::munmap(en.slot, en.slot_bytes);
  if (fd_ >= 0) ::close(fd_);
}

void ExpertCache::add_layer(int64_t layer, const LayerStacks& l) {
  if (layer < 0 || layer >= n_layer_) throw Error("expert cache: layer " + std::to_string(layer) + " out of range");
  Layer& L = layers_[static_cast<size_t>(layer)];
  L.stacks = l;
  for (int m = 0; m < 3; ++m) {
    TensorView one = l.stacks[m];
    one.n_dims = 2;
    one.ne = {one.ne[0], one.ne[1], 1, 1};
    L.matrix_file_bytes[m] = one.n_bytes();
    L.matrix_slot_bytes[m] = kernels::prepared_bytes(one, prepare_);
  }
  // The file's pages of these experts (read ahead when it was mapped, say) would only compete
  // with the cache: dropped.
  for (int m = 0; m < 3; ++m)
    ::posix_fadvise(fd_, static_cast<off_t>(l.file_offset[m]), static_cast<off_t>(l.stacks[m].n_bytes()),
                    POSIX_FADV_DONTNEED);
  int64_t streamed = 0;
  for (const Layer& x : layers_) streamed += x.stacks ? 1 : 0;
  fresh_window_ = static_cast<uint64_t>(2 * streamed * std::max<int64_t>(l.n_expert_used, 1));
}

uint64_t ExpertCache::expert_bytes(int64_t layer) const {
  const Layer& L = layers_[static_cast<size_t>(layer)];
  return L.matrix_slot_bytes[0] + L.matrix_slot_bytes[1] + L.matrix_slot_bytes[2];
}

bool ExpertCache::queue_locked(int64_t layer, int32_t e, bool demand) {
  Entry& en = entry(layer, e);
  if (en.state == State::Ready) return true;
  if (en.state == State::Queued) {
    if (!demand) return true;
    // A read ahead whose reads still wait becomes a demand read: its reads go first in line.
    std::vector<Job> upgraded;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->layer == layer && it->e == e && !it->demand) {
        upgraded.push_back(*it);
        upgraded.back().demand = true;
        it = queue_.erase(it);
      } else {
        ++it;
      }
    }
    for (const Job& j : upgraded) queue_.push_front(j);
    if (!upgraded.empty()) en.demand_read = true;
    return true;
  }
  en.state = State::Queued;
  en.fresh = true;
  en.demand_read = demand;
  en.read_ahead = !demand;
  en.queued_at = clock_;
  en.error.clear();
  if (demand) {
    queue_.push_front({layer, e, true});
  } else {
    queue_.push_back({layer, e, false});
  }
  work_cv_.notify_one();
  return true;
}

uint8_t* ExpertCache::take_slot_locked(size_t bytes, bool demand) {
  while (used_ + bytes > capacity_) {
    Entry* victim = nullptr;
    // First pass: experts neither pinned nor recently asked for; a demand read then takes
    // recently asked ones too (a read ahead never does).
    for (int pass = 0; pass < (demand ? 2 : 1) && !victim; ++pass) {
      for (Entry& en : entries_) {
        if (en.state != State::Ready || en.pins > 0) continue;
        if (pass == 0 && en.fresh && clock_ - en.queued_at < fresh_window_) continue;
        if (!victim || en.uses < victim->uses || (en.uses == victim->uses && en.last_use < victim->last_use))
          victim = &en;
      }
    }
    if (!victim) {
      if (!demand) return nullptr;
      break;  // everything cached is in use: go over the budget by this expert rather than stall
    }
    uint8_t* slot = victim->slot;
    const size_t size = victim->slot_bytes;
    victim->state = State::Absent;
    victim->weights = {};
    victim->slot = nullptr;
    victim->slot_bytes = 0;
    victim->uses = 0;
    ++stats_.evictions;
    if (victim->read_ahead) ++stats_.prefetch_wasted;  // read ahead, never used
    victim->read_ahead = false;
    if (size == bytes) return slot;  // same size: reuse the memory as it is (no unmap, no zeroing)
    ::munmap(slot, size);
    used_ -= size;
  }
  uint8_t* slot = map_slot(bytes);
  used_ += bytes;
  return slot;
}

void ExpertCache::request(int64_t layer, std::span<const int32_t> experts) {
  std::lock_guard lock(mu_);
  for (const int32_t e : experts) queue_locked(layer, e, true);
}

void ExpertCache::prefetch_after(int64_t layer, const float* x, int64_t n_tokens) {
  if (n_tokens > 4) return;  // a prompt's rows pick most experts anyway; reading ahead would evict
  {
    std::lock_guard lock(mu_);
    if (clock_ < prefetch_paused_until_) return;
  }
  int64_t next = layer + 1;
  while (next < n_layer_ && !layers_[static_cast<size_t>(next)].stacks) ++next;
  if (next >= n_layer_) return;
  const LayerStacks& l = *layers_[static_cast<size_t>(next)].stacks;
  const int64_t n_exp = l.router.out(), k = l.n_expert_used;
  float* logits = grow(prefetch_logits_, n_tokens * n_exp);
  kernels::matmul(l.router, x, n_tokens, logits);
  int32_t* ids = grow(prefetch_ids_, k);
  std::lock_guard lock(mu_);
  for (int64_t t = 0; t < n_tokens; ++t) {
    float* row = logits + t * n_exp;
    if (l.probs_bias)
      for (int64_t e = 0; e < n_exp; ++e) row[e] += l.probs_bias[e];
    kernels::top_k(row, n_exp, k, ids);
    for (int64_t j = 0; j < k; ++j) {
      if (entry(next, ids[j]).state != State::Absent) continue;
      queue_locked(next, ids[j], false);
      ++stats_.prefetches;
      ++window_guesses_;
    }
  }
  constexpr uint64_t kWindow = 64;
  if (window_guesses_ >= kWindow) {
    if (window_used_ * 2 < window_guesses_) prefetch_paused_until_ = clock_ + 256 * kWindow;
    window_guesses_ = window_used_ = 0;
  }
}

const ExpertCache::Expert& ExpertCache::pin(int64_t layer, int32_t e) {
  std::unique_lock lock(mu_);
  Entry& en = entry(layer, e);
  if (en.state == State::Queued) queue_locked(layer, e, true);  // a waiting read ahead goes first now
  // Absent at first, or again when another read evicted it between its read and this wake-up.
  while (en.state != State::Ready && en.state != State::Failed) {
    if (en.state == State::Absent) queue_locked(layer, e, true);
    ready_cv_.wait(lock);
  }
  if (en.state == State::Failed) {
    en.state = State::Absent;
    throw Error(en.error);
  }
  ++(en.demand_read ? stats_.misses : stats_.hits);
  if (en.read_ahead) {
    ++stats_.prefetch_used;
    ++window_used_;
  }
  en.demand_read = false;
  en.read_ahead = false;
  en.fresh = false;
  ++en.pins;
  ++en.uses;
  en.last_use = ++clock_;
  if (clock_ >= next_aging_) {  // halve every count now and then: recent use outweighs old
    for (Entry& x : entries_) x.uses /= 2;
    next_aging_ = clock_ + 4 * std::max<uint64_t>(fresh_window_, 64);
  }
  return en.weights;
}

void ExpertCache::unpin(int64_t layer, int32_t e) {
  std::lock_guard lock(mu_);
  Entry& en = entry(layer, e);
  if (en.pins > 0) --en.pins;
}

ExpertCache::Stats ExpertCache::stats() const {
  std::lock_guard lock(mu_);
  Stats s = stats_;
  s.cached_bytes = used_;
  return s;
}

void ExpertCache::io_thread() {
  std::vector<uint8_t> staging;
  std::unique_lock lock(mu_);
  while (true) {
    work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
    if (stop_) return;
    const Job job = queue_.front();
    queue_.pop_front();
    Entry& en = entry(job.layer, job.e);
    int part = job.part;
    if (part < 0) {
      if (en.state != State::Queued || en.slot) continue;  // already read by another thread
      const size_t bytes = expert_bytes(job.layer);
      uint8_t* slot = nullptr;
      try {
        slot = take_slot_locked(bytes, job.demand);
      } catch (const Error& err) {
        en.state = State::Failed;
        en.error = err.what();
        ready_cv_.notify_all();
        continue;
      }
      if (!slot) {  // a read ahead with no room: forget it
        en.state = State::Absent;
        en.fresh = false;
        en.read_ahead = false;
        continue;
      }
      en.slot = slot;
      en.slot_bytes = bytes;
      en.parts_left = 3;
      en.error.clear();
      // Matrices 1 and 2 go first in line for the other threads; this one reads matrix 0.
      queue_.push_front({job.layer, job.e, job.demand, 2});
      queue_.push_front({job.layer, job.e, job.demand, 1});
      work_cv_.notify_all();
      part = 0;
    }
    uint8_t* slot = en.slot;
    if (in_flight_++ == 0) busy_since_ = std::chrono::steady_clock::now();
    lock.unlock();
    kernels::Weight w;
    std::string error;
    try {
      w = read_matrix(job.layer, job.e, part, slot, staging);
    } catch (const std::exception& err) {
      error = err.what();
    }
    lock.lock();
    if (--in_flight_ == 0)
      stats_.read_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - busy_since_).count();
    stats_.bytes_read += layers_[static_cast<size_t>(job.layer)].matrix_file_bytes[static_cast<size_t>(part)];
    Expert& x = en.weights;
    (part == 0 ? x.gate : part == 1 ? x.up : x.down) = std::move(w);
    if (!error.empty() && en.error.empty()) en.error = error;
    if (--en.parts_left > 0) continue;
    if (en.error.empty()) {
      en.state = State::Ready;
    } else {
      ::munmap(en.slot, en.slot_bytes);
      used_ -= en.slot_bytes;
      en.slot = nullptr;
      en.slot_bytes = 0;
      en.weights = {};
      en.state = State::Failed;
    }
    ready_cv_.notify_all();
  }
}

void ExpertCache::read_range(uint64_t offset, uint64_t n, std::vector<uint8_t>& staging, const uint8_t** data) {
  const uint64_t begin = direct_ ? round_down(offset, kAlign) : offset;
  const uint64_t end = direct_ ? round_up(offset + n, kAlign) : offset + n;
  uint8_t* buf = grow(staging, static_cast<int64_t>(end - begin + kAlign));
  buf += (kAlign - reinterpret_cast<uintptr_t>(buf) % kAlign) % kAlign;
  uint64_t done = 0;
  const uint64_t need = offset + n - begin;
  while (done < need) {
    const ssize_t r = ::pread(fd_, buf + done, end - begin - done, static_cast<off_t>(begin + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0)
      throw Error("expert cache: reading '" + path_ + "' at byte " + std::to_string(begin + done) +
                  " failed: " + (r < 0 ? std::strerror(errno) : "the file is shorter than its tensor table says"));
    done += static_cast<uint64_t>(r);
  }
  // Buffered reads leave the pages in the page cache; this copy is the one kept.
  if (!direct_) ::posix_fadvise(fd_, static_cast<off_t>(offset), static_cast<off_t>(n), POSIX_FADV_DONTNEED);
  *data = buf + (offset - begin);
}

kernels::Weight ExpertCache::read_matrix(int64_t layer, int32_t e, int m, uint8_t* slot,
                                         std::vector<uint8_t>& staging) {
  const Layer& L = layers_[static_cast<size_t>(layer)];
  TensorView v = L.stacks->stacks[static_cast<size_t>(m)];
  const uint64_t bytes = L.matrix_file_bytes[static_cast<size_t>(m)];
  const uint8_t* data = nullptr;
  read_range(L.stacks->file_offset[static_cast<size_t>(m)] + static_cast<uint64_t>(e) * bytes, bytes, staging, &data);
  v.n_dims = 2;
  v.ne = {v.ne[0], v.ne[1], 1, 1};
  v.data = data;
  size_t at = 0;
  for (int i = 0; i < m; ++i) at += L.matrix_slot_bytes[static_cast<size_t>(i)];
  return kernels::prepare_weight_into(v, prepare_, slot + at);
}

}  // namespace owl
