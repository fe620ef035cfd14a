// owl gguf-dump FILE: prints a GGUF file's metadata and tensor table (a debugging aid).
#include <cstdio>
#include <memory>

#include "cli/command.h"
#include "formats/gguf.h"

namespace {

struct Options {
  std::string path;
  size_t max_items = 8;
};

void run(const Options& o) {
  auto f = owl::gguf::File::open(o.path);
  std::printf("GGUF v%u, %zu metadata keys, %zu tensors, alignment %llu, data at %llu\n", f->version(),
              f->metadata().items.size(), f->tensor_infos().size(), static_cast<unsigned long long>(f->alignment()),
              static_cast<unsigned long long>(f->data_offset()));
  for (const auto& [k, v] : f->metadata().items)
    std::printf("  %-48s %-6s %s\n", k.c_str(), owl::gguf::value_type_name(v.type), v.to_string(o.max_items).c_str());
  for (const auto& ti : f->tensor_infos()) {
    auto v = f->view(ti);
    std::printf("  %-48s %-7s %-22s %llu bytes\n", ti.name.c_str(), owl::dtype_name(ti.type), v.shape_str().c_str(),
                static_cast<unsigned long long>(ti.n_bytes));
  }
}

void setup(CLI::App& app) {
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("gguf-dump", "Print a GGUF file's metadata and tensor table");
  sub->add_option("file", o->path, "GGUF file")->required();
  sub->add_option("--max-items", o->max_items, "array items to show per key");
  sub->callback([o] { run(*o); });
}

}  // namespace

OWL_COMMAND(setup);
