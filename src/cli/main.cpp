// owl: run and serve open-weight language models.
// Exit codes: 0 success, 1 runtime error, 2 usage error. Errors: one line on stderr.
#include <cstdio>
#include <exception>
#include <string>

#include "base/error.h"
#include "cli/command.h"

namespace owl::cli {
std::vector<CommandSetup>& command_registry() {
  static std::vector<CommandSetup> r;
  return r;
}
}  // namespace owl::cli

int main(int argc, char** argv) {
  CLI::App app{"owl: run and serve open-weight language models on the hardware you have", "owl"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "owl 0.1.0");
  for (auto setup : owl::cli::command_registry()) setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string sub;
    for (auto* s : app.get_subcommands()) sub = " " + s->get_name();
    std::fprintf(stderr, "owl: usage error: %s; run 'owl%s --help' for usage\n", e.what(), sub.c_str());
    return 2;
  } catch (const owl::UsageError& e) {
    std::fprintf(stderr, "owl: usage error: %s\n", e.what());
    return 2;
  } catch (const owl::Error& e) {
    std::fprintf(stderr, "owl: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "owl: error: out of memory; try a smaller --ctx or a smaller model\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "owl: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
