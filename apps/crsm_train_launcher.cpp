// crsm_train, as users run it: it blocks SIGTERM and SIGUSR1, sets OpenBLAS's settings
// (base/blas_environment.h) and executes the program itself, libexec/crsm/crsm_train
// beside bin/, in its place. LibTorch takes about half a second to load; a preemption
// signal arriving then would kill a program that has not yet installed its handlers.
// Blocked, it stays pending across the exec until the program's main() has them in place
// (dist::install_preemption_handlers unblocks it), so a signal from the first instruction
// on ends the command at its first safe point. Setting OpenBLAS's variables here, before
// the library loads, spares the program the second start it would otherwise need.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "base/blas_environment.h"

int main(int, char** argv) {
  sigset_t preemption;
  sigemptyset(&preemption);
  sigaddset(&preemption, SIGTERM);
  sigaddset(&preemption, SIGUSR1);
  sigprocmask(SIG_BLOCK, &preemption, nullptr);
  crsm::base::set_blas_environment();
  // The same layout in the build tree (build/apps, build/libexec) and once installed.
  std::string self(4096, '\0');
  const ssize_t n = readlink("/proc/self/exe", self.data(), self.size() - 1);
  self.resize(n > 0 ? static_cast<size_t>(n) : 0);
  const std::string program = self.substr(0, self.rfind('/') + 1) + "../libexec/crsm/crsm_train";
  execv(program.c_str(), argv);
  std::fprintf(stderr, "crsm_train: cannot run the program %s: %s (is the installation complete?)\n", program.c_str(),
               std::strerror(errno));
  return 70;
}
