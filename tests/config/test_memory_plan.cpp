#include <gtest/gtest.h>

#include "base/error.h"
#include "config/run_config.h"
#include "model/parameter_count.h"
#include "config/memory_plan.h"

namespace {

using crsm::RunConfig;
using crsm::check_fits_in_memory;
using crsm::MemoryUse;
using crsm::planned_bytes_per_rank;

RunConfig tiny() {
  RunConfig c;
  c.model.vocab_size = 258;
  c.model.d_model = 32;
  c.model.d_ffn = 64;
  c.model.num_layers = 2;
  c.train.batch_size = 12;
  c.train.seq_len = 32;
  return c;
}

TEST(MemoryFit, ThePlanCountsWeightsGradientsAdamAndLogits) {
  const RunConfig c = tiny();
  const double params = static_cast<double>(crsm::model::analytic_parameter_count(c.model));
  EXPECT_EQ(planned_bytes_per_rank(c, MemoryUse::kInference, 1, 0), 4 * params);
  const double logits = 6.0 * 32 * 258;
  EXPECT_EQ(planned_bytes_per_rank(c, MemoryUse::kTraining, 1, 6), 4 * (4 * params + logits));
  RunConfig sharded = c;
  sharded.zero_stage = 2;
  EXPECT_EQ(planned_bytes_per_rank(sharded, MemoryUse::kTraining, 4, 6), 4 * (params + 3 * params / 4 + logits));
}

TEST(MemoryFit, ASmallConfigFitsAndAnAbsurdOneIsRefusedNamingItsKeys) {
  EXPECT_NO_THROW(check_fits_in_memory(tiny(), MemoryUse::kTraining, 1, 1, 12, "tiny"));
  RunConfig huge = tiny();
  // A_log and x_proj grow with expand * d_model * d_state: about 70 TB of training state,
  // beyond any machine's memory.
  huge.model.d_model = 16384;
  huge.model.d_state = int64_t{1} << 24;
  try {
    check_fits_in_memory(huge, MemoryUse::kTraining, 1, 1, 12, "huge.json");
    FAIL() << "expected UsageError";
  } catch (const crsm::UsageError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind("huge.json: training needs at least ", 0), 0u) << m;
    EXPECT_NE(m.find("more than this machine's"), std::string::npos) << m;
    EXPECT_NE(m.find("it is large because of d_state = 16777216 (default 16) and d_model = 16384 (default 128)"),
              std::string::npos)
        << m;
    EXPECT_EQ(m.find("vocab_size"), std::string::npos) << "vocab_size is near its default: " << m;
  }
}

TEST(MemoryFit, NeverOverflowsWhateverTheSizes) {
  RunConfig c = tiny();
  c.model.d_model = c.model.d_state = c.model.d_ffn = int64_t{1} << 24;
  c.model.num_layers = 4096;
  c.model.expand = 64;
  const double bytes = planned_bytes_per_rank(c, MemoryUse::kTraining, 1, 1 << 24);
  EXPECT_TRUE(std::isfinite(bytes));
  EXPECT_GT(bytes, 1e21);
  EXPECT_THROW(check_fits_in_memory(c, MemoryUse::kInference, 1, 1, 0, "c"), crsm::UsageError);
}

}  // namespace
