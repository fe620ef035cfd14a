// Minimal leveled logging to stderr. OWL_LOG=debug|info|warn|error (default warn).
#pragma once
#include <string>

namespace owl::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };
Level level();
void write(Level lv, const std::string& msg);
inline void debug(const std::string& m) { write(Level::Debug, m); }
inline void info(const std::string& m) { write(Level::Info, m); }
inline void warn(const std::string& m) { write(Level::Warn, m); }

}  // namespace owl::log
