// The CLI over the admin API, in the manner of `gcloud run services list/describe`:
// `revgate services list|describe` and `revgate revisions list`. Registered on the CLI11 app
// by main(), run on the main thread; output goes to stdout, one-line errors to stderr.
#pragma once

#include <memory>
#include <optional>

namespace CLI {
class App;
}

namespace revgate::cli {

class AdminCommands {
 public:
  // Adds the `services` and `revisions` subcommands to `app`.
  explicit AdminCommands(CLI::App& app);
  ~AdminCommands();
  AdminCommands(const AdminCommands&) = delete;
  AdminCommands& operator=(const AdminCommands&) = delete;

  // After parsing: the exit code (0 ok, 1 not found or admin unreachable, 2 usage) when one of
  // these subcommands was chosen, nullopt otherwise.
  std::optional<int> run() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace revgate::cli
