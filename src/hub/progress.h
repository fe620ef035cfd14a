// Download progress on stderr: a redrawn bar with size, speed and ETA when
// stderr is a terminal; otherwise one line when a file starts and one when it ends.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace owl::hub {

class Progress {
 public:
  // `already`: bytes present before this run (a resumed download).
  Progress(std::string name, uint64_t total, uint64_t already, bool quiet);
  void update(uint64_t done);  // total bytes present now; redraws at most 10 times a second
  void finish(bool ok);

 private:
  void draw(bool final_line);
  std::string name_;
  uint64_t total_, already_, done_;
  bool quiet_, tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);

}  // namespace owl::hub
