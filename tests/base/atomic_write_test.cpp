// write_file_atomically: a file is either the old one or the complete new one, never a part.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "base/atomic_write.h"
#include "base/error.h"
#include "test_util.h"

namespace fs = std::filesystem;

TEST(AtomicWrite, ReplacesTheFileOnlyWhenComplete) {
  const std::string dir = owl::test::temp_dir(), path = dir + "/out.bin";
  { std::ofstream(path) << "old"; }
  owl::write_file_atomically(path, [&](std::FILE* f) { owl::write_bytes(f, "new bytes", 9, path); });
  EXPECT_EQ(owl::test::read_file(path), "new bytes");
  EXPECT_FALSE(fs::exists(path + ".tmp"));

  // A writer that fails half-way leaves the old file and no temporary behind.
  EXPECT_THROW(owl::write_file_atomically(path,
                                          [&](std::FILE* f) {
                                            owl::write_bytes(f, "partial", 7, path);
                                            throw owl::Error("generator failed");
                                          }),
               owl::Error);
  EXPECT_EQ(owl::test::read_file(path), "new bytes");
  EXPECT_FALSE(fs::exists(path + ".tmp"));
  fs::remove_all(dir);
}

TEST(AtomicWrite, MissingFolderIsAClearError) {
  const std::string path = owl::test::temp_dir() + "/no/such/folder/out.bin";
  try {
    owl::write_file_atomically(path, [&](std::FILE* f) { owl::write_bytes(f, "x", 1, path); });
    FAIL() << "expected an error";
  } catch (const owl::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind("cannot create '" + path + ".tmp': ", 0), 0u) << e.what();
  }
}
