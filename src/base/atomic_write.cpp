#include "base/atomic_write.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "base/error.h"

namespace owl {

void write_bytes(std::FILE* f, const void* p, size_t n, const std::string& path) {
  if (n && std::fwrite(p, 1, n, f) != n)
    throw Error("cannot write '" + path + "': " + std::strerror(errno) + " (disk full?)");
}

void write_file_atomically(const std::string& path, const std::function<void(std::FILE*)>& write) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw Error("cannot create '" + tmp + "': " + std::strerror(errno) + "; check that the folder is writable");
  std::setvbuf(f, nullptr, _IOFBF, 1 << 22);
  try {
    write(f);
    if (std::fflush(f) != 0) throw Error("cannot write '" + path + "': " + std::strerror(errno) + " (disk full?)");
  } catch (...) {
    std::fclose(f);
    std::remove(tmp.c_str());
    throw;
  }
  // close can still report a failed write-back (NFS, quotas): the file is then not complete.
  if (std::fclose(f) != 0) {
    const std::string why = std::strerror(errno);
    std::remove(tmp.c_str());
    throw Error("cannot write '" + path + "': " + why);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    throw Error("cannot rename '" + tmp + "' to '" + path + "': " + ec.message());
  }
}

}  // namespace owl
