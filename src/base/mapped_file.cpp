#include "base/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/error.h"
#include "base/memory_budget.h"

namespace owl {

namespace {

// Starts reading the whole file into the page cache in the background when it fits in a
// quarter of RAM (or of the memory cgroup's limit), so a model's first forward pass finds its
// weights in memory instead of faulting them in 4 KiB at a time from disk. Larger files (a 700 GB
// DeepSeek on a 24 GB machine) are left to demand paging: reading them ahead would only evict
// other pages.
void advise_read_ahead(void* p, size_t size) {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return;
  double ram = static_cast<double>(pages) * static_cast<double>(page_size);
  if (const auto limit = cgroup_memory_limit()) ram = std::min(ram, static_cast<double>(*limit));
  if (static_cast<double>(size) > ram / 4) return;
  ::madvise(p, size, MADV_WILLNEED);  // a hint: failure changes nothing
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error("cannot open '" + path + "': " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw Error("cannot stat '" + path + "': " + std::strerror(e));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    throw Error("'" + path + "' is a directory, expected a file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw Error("cannot memory-map '" + path + "': " + std::strerror(e));
    }
    data_ = static_cast<const uint8_t*>(p);
    advise_read_ahead(p, size_);
  }
  ::close(fd);
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace owl
