// Subcommand registry. Each src/cli/cmd_*.cpp defines one subcommand and
// registers it with OWL_COMMAND; main.cpp builds the CLI11 app from the list.
// Adding a command = adding one file, no central switch to edit.
#pragma once
#include <CLI/CLI.hpp>
#include <functional>
#include <vector>

namespace owl::cli {

// Adds a subcommand to `app`; its callback does the work and throws
// owl::Error (exit 1) or owl::UsageError (exit 2) on failure.
using CommandSetup = void (*)(CLI::App& app);

std::vector<CommandSetup>& command_registry();

struct CommandRegistrar {
  explicit CommandRegistrar(CommandSetup s) { command_registry().push_back(s); }
};

}  // namespace owl::cli

#define OWL_COMMAND_CAT2(a, b) a##b
#define OWL_COMMAND_CAT(a, b) OWL_COMMAND_CAT2(a, b)
#define OWL_COMMAND(setup_fn) \
  static ::owl::cli::CommandRegistrar OWL_COMMAND_CAT(owl_command_registrar_, __LINE__)(setup_fn)
