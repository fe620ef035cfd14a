// Minimal leveled logging to stderr. OWL_LOG=debug|info|warn|error (default warn).
#pragma once
#include <string>

namespace owl::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };
Level level();
void write(Level lv, const std::string& msg);
inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }

}  // namespace owl::log
