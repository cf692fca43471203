#include "cli/run_record.h"

#include <chrono>
#include <ctime>
#include <vector>

#include "cli/version.h"
#include "dist/communicator.h"
#include "dist/runtime.h"

namespace crsm::cli {
namespace {

std::vector<std::string>& command_line() {
  static std::vector<std::string> words;
  return words;
}

std::string utc_now() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

}  // namespace

void remember_command_line(int argc, char** argv) { command_line().assign(argv, argv + argc); }

nlohmann::json run_record(const std::string& command, const ParsedOptions& o, const RunConfig& config,
                          const Session& session) {
  return {{"time", utc_now()},
          {"command_line", command_line()},
          {"command", command},
          {"arguments", o.arguments()},
          {"options", o.resolved()},
          {"config", to_json(config)},
          {"versions", version_info()},
          {"world_size", session.runtime.world_size},
          {"hosts", dist::all_gather_strings(*session.comm, dist::host_name())}};
}

}  // namespace crsm::cli
