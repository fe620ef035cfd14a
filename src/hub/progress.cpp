#include "hub/progress.h"

#include <unistd.h>

#include <cstdio>

#include "hub/cache.h"

namespace owl::hub {

std::string format_duration(double s) {
  if (s < 0 || s > 99 * 3600) return "--:--";
  auto t = static_cast<long>(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

Progress::Progress(std::string name, uint64_t total, uint64_t already, bool quiet)
    : name_(std::move(name)),
      total_(total),
      already_(already),
      done_(already),
      quiet_(quiet),
      tty_(::isatty(STDERR_FILENO) == 1),
      start_(std::chrono::steady_clock::now()),
      last_draw_() {
  if (quiet_) return;
  if (tty_) {
    draw(false);
  } else {
    std::fprintf(stderr, "owl: downloading %s (%s%s)\n", name_.c_str(), human_size(total_).c_str(),
                 already_ > 0 ? (", resuming at " + human_size(already_)).c_str() : "");
  }
}

void Progress::update(uint64_t done) {
  done_ = done;
  if (quiet_ || !tty_) return;
  auto now = std::chrono::steady_clock::now();
  if (now - last_draw_ < std::chrono::milliseconds(100)) return;
  draw(false);
}

void Progress::draw(bool final_line) {
  last_draw_ = std::chrono::steady_clock::now();
  double secs = std::chrono::duration<double>(last_draw_ - start_).count();
  double speed = secs > 0 ? static_cast<double>(done_ - already_) / secs : 0;
  double eta = speed > 0 ? static_cast<double>(total_ - done_) / speed : -1;
  int pct = total_ ? static_cast<int>(100.0 * static_cast<double>(done_) / static_cast<double>(total_)) : 100;
  const int width = 24;
  std::string bar(width, ' ');
  for (int i = 0; i < width * pct / 100; ++i) bar[i] = '#';
  std::string name = name_.size() > 40 ? "..." + name_.substr(name_.size() - 37) : name_;
  std::fprintf(stderr, "\r%-40s %3d%% [%s] %s/%s %s/s %s %s\033[K%s", name.c_str(), pct, bar.c_str(),
               human_size(done_).c_str(), human_size(total_).c_str(), human_size(static_cast<uint64_t>(speed)).c_str(),
               final_line ? "in" : "ETA", format_duration(final_line ? secs : eta).c_str(), final_line ? "\n" : "");
  std::fflush(stderr);
}

void Progress::finish(bool ok) {
  if (finished_ || quiet_) return;
  finished_ = true;
  if (tty_) {
    if (ok)
      draw(true);
    else
      std::fprintf(stderr, "\n");
    return;
  }
  if (!ok) return;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double speed = secs > 0 ? static_cast<double>(done_ - already_) / secs : 0;
  std::fprintf(stderr, "owl: %s: %s in %.2f s (%s/s)\n", name_.c_str(), human_size(done_ - already_).c_str(), secs,
               human_size(static_cast<uint64_t>(speed)).c_str());
}

}  // namespace owl::hub
