// Writing a file so that nobody ever sees it half-written (owl quantize, convert, export):
// the bytes go to PATH.tmp, which replaces PATH by rename only once everything is written,
// flushed and closed without error; on any error PATH.tmp is removed and PATH is untouched.
#pragma once
#include <cstddef>
#include <cstdio>
#include <functional>
#include <string>

namespace owl {

// Calls write(stream) with a buffered stream on PATH.tmp; `write` may throw (the error passes
// through after the clean-up). I/O failures are owl::Errors naming `path`.
void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& write);

// fwrite of n bytes that throws an owl::Error naming `path` on a short write (a full disk).
void write_bytes(std::FILE* f, const void* p, size_t n, const std::string& path);

}  // namespace owl
