// `revgate traffic SERVICE ...`: `gcloud run services update-traffic` against a running
// revgate's admin API: GET the service, compute the new traffic (cli/traffic_update.h), PATCH it
// and print the traffic table. Registered on the CLI11 app by main(); main thread only.
#pragma once

#include <memory>
#include <optional>

namespace CLI {
class App;
}

namespace revgate::cli {

class TrafficCommand {
 public:
  explicit TrafficCommand(CLI::App& app);
  ~TrafficCommand();
  TrafficCommand(const TrafficCommand&) = delete;
  TrafficCommand& operator=(const TrafficCommand&) = delete;

  // After parsing: the exit code (0 ok, 1 refused or admin unreachable, 2 usage) when the
  // subcommand was chosen, nullopt otherwise.
  std::optional<int> run() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace revgate::cli
