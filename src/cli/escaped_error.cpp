#include "cli/escaped_error.h"

#include <boost/program_options/errors.hpp>
#include <c10/util/Exception.h>

#include <filesystem>
#include <new>

#include "base/error.h"
#include "dist/communicator.h"
#include "base/exit_status.h"

namespace crsm::cli {
namespace {

std::string first_line(std::string text) {
  text = text.substr(0, text.find('\n'));
  return text.size() > 300 ? text.substr(0, 300) + "..." : text;
}

bool out_of_memory(const c10::Error& e) {
  const std::string m = e.msg();
  return dynamic_cast<const c10::OutOfMemoryError*>(&e) || m.find("not enough memory") != std::string::npos ||
         m.find("can't allocate memory") != std::string::npos;
}

}  // namespace

EscapedError describe_escaped(const std::string& command, const std::exception_ptr& escaped) {
  const std::string prefix = "crsm_train " + command + ": ";
  const auto bug = [&](const std::string& what) {
    return EscapedError{kExitInternalError,
                        prefix + "internal error (" + first_line(what) +
                            "). This is a bug in crsm_train: please report it with the command line and this message."};
  };
  const std::string oom_hint = " (reduce the model, batch_size or seq_len)";
  try {
    std::rethrow_exception(escaped);
  } catch (const boost::program_options::error& e) {
    return {kExitBadInput, prefix + e.what() + " (see crsm_train " + command + " --help)"};
  } catch (const Preempted& e) {
    return {kExitPreempted, e.what()};
  } catch (const dist::CommTimeout& e) {
    return {kExitCollectiveTimeout, prefix + "error: " + e.what()};
  } catch (const dist::CommFailure& e) {
    return {kExitCommFailure, prefix + "error: " + e.what()};
  } catch (const Error& e) {
    return {kExitBadInput, prefix + "error: " + e.what()};
  } catch (const std::filesystem::filesystem_error& e) {
    // It names the path and the system's reason (a permission, a full disk): not a bug.
    return {kExitBadInput, prefix + "error: " + e.what()};
  } catch (const std::bad_alloc&) {
    return {kExitBadInput, prefix + "error: out of memory" + oom_hint};
  } catch (const c10::Error& e) {
    if (out_of_memory(e)) return {kExitBadInput, prefix + "error: out of memory: " + first_line(e.msg()) + oom_hint};
    return bug("c10::Error: " + e.msg());
  } catch (const std::exception& e) {
    return bug(e.what());
  } catch (...) {
    return bug("an exception of unknown type");
  }
}

}  // namespace crsm::cli
