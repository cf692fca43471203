#include "cli/cli_common.h"

#include <iostream>

#include "dist/runtime.h"

namespace crsm::cli {

bool parse_options(int argc, char** argv, const std::string& usage,
                   const po::options_description& options, po::variables_map& vm,
                   const po::positional_options_description* positional) {
  po::options_description all(options);
  all.add_options()("help,h", "show this help");
  auto parser = po::command_line_parser(argc, argv).options(all);
  if (positional) parser.positional(*positional);
  po::store(parser.run(), vm);
  if (vm.count("help")) {
    // Under mpirun every rank parses the same flags; one copy of the help is enough.
    if (dist::runtime().is_root()) std::cout << usage << "\n\n" << all << "\n";
    return false;
  }
  po::notify(vm);
  return true;
}

}  // namespace crsm::cli
