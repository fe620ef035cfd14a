#include "base/log.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace owl::log {

Level level() {
  static const Level lv = [] {
    const char* e = std::getenv("OWL_LOG");
    if (!e) return Level::Warn;
    if (!std::strcmp(e, "debug")) return Level::Debug;
    if (!std::strcmp(e, "info")) return Level::Info;
    if (!std::strcmp(e, "error")) return Level::Error;
    return Level::Warn;
  }();
  return lv;
}

void write(Level lv, const std::string& msg) {
  if (lv < level()) return;
  static const char* names[] = {"debug", "info", "warn", "error"};
  std::fprintf(stderr, "owl: %s: %s\n", names[static_cast<int>(lv)], msg.c_str());
}

}  // namespace owl::log
