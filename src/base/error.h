// Errors: owl reports every failure as an exception carrying one clear line
// that says what is wrong and, where possible, what to do about it.
#pragma once
#include <stdexcept>
#include <string>

namespace owl {

// A runtime failure: bad file, bad request, resource limit. The CLI exits 1.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// The command line itself was wrong. The CLI exits 2.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& what) : Error(what) {}
};

}  // namespace owl
