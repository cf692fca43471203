#include "model/cpu_kernels.h"

#include <atomic>

namespace crsm::model {
namespace {

std::atomic<bool> g_fused{true};

}  // namespace

void set_fused_cpu_kernels(bool on) { g_fused = on; }
bool fused_cpu_kernels() { return g_fused; }

}  // namespace crsm::model
