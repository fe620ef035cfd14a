// Running owl under mpirun from the tests: the launcher's options for a test machine (as root,
// more ranks than cores), and the single-process run the distributed one must equal.
#pragma once
#include <string>
#include <vector>

#include "test_util.h"

namespace owl::test {

// mpirun's options for every test run: allowed as root (CI runs as root), ranks beyond the
// core count, Open MPI's own help texts off.
inline std::vector<std::string> mpirun_options() { return {"--allow-run-as-root", "--oversubscribe", "-q"}; }

// Runs `mpirun [launcher options] APPS` with APPS already quoted; captures stdout and stderr.
inline RunResult run_mpirun(const std::string& apps, const std::vector<std::string>& launcher_args) {
  const std::string dir = temp_dir();
  const std::string out = dir + "/mpi-stdout", err = dir + "/mpi-stderr";
  std::string cmd = "mpirun";
  for (const auto& a : mpirun_options()) cmd += " " + shell_quote(a);
  for (const auto& a : launcher_args) cmd += " " + shell_quote(a);
  cmd += " " + apps + " </dev/null >" + shell_quote(out) + " 2>" + shell_quote(err);
  const int st = std::system(cmd.c_str());
  RunResult r;
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = read_file(out);
  r.err = read_file(err);
  return r;
}

// `-n N [app options] owl ARGS`, quoted for the shell.
inline std::string owl_app(int n_ranks, const std::vector<std::string>& owl_args,
                           const std::vector<std::string>& app_options = {}) {
  std::string app = "-n " + std::to_string(n_ranks);
  for (const auto& a : app_options) app += " " + shell_quote(a);
  app += " " + shell_quote(OWL_BINARY);
  for (const auto& a : owl_args) app += " " + shell_quote(a);
  return app;
}

// Runs `mpirun [launcher options] -n N owl ARGS`; captures stdout and stderr.
inline RunResult run_mpi(int n_ranks, const std::vector<std::string>& owl_args,
                         const std::vector<std::string>& launcher_args = {}) {
  return run_mpirun(owl_app(n_ranks, owl_args), launcher_args);
}

// Runs one rank per entry with its own command line (mpirun's colon syntax:
// `-n 1 owl ARGS0 : -n 1 owl ARGS1 ...`), as hosts given different options are launched.
// `app_options` go to every app context: Open MPI applies `-x VAR=VALUE` only to the context it
// is given in.
inline RunResult run_mpi_per_rank(const std::vector<std::vector<std::string>>& rank_args,
                                  const std::vector<std::string>& app_options = {}) {
  std::string apps;
  for (const auto& args : rank_args) apps += (apps.empty() ? "" : " : ") + owl_app(1, args, app_options);
  return run_mpirun(apps, {});
}

inline std::string join_ids(const std::vector<int32_t>& ids) {
  std::string s;
  for (auto id : ids) s += (s.empty() ? "" : ",") + std::to_string(id);
  return s;
}

}  // namespace owl::test
