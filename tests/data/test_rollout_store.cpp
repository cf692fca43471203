// The rollout store (SPEC §9): rows of every column type round-trip through rank files
// and a master, each row comes back as the rollout it was made from, and a field wider
// than the file's width is refused naming it.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <stdexcept>

#include "../support/scratch_dir.h"
#include "data/data_error.h"
#include "data/rollout_store.h"

namespace {

namespace fs = std::filesystem;
using crsm::data::Rollout;
using crsm::data::RolloutSchema;

const RolloutSchema kRolloutSchema{8, 5, 4, 2, 50, std::string(64, 'a'), "plan-1"};

std::vector<Rollout> some_rollouts(int first, int n) {
  std::vector<Rollout> out;
  for (int i = first; i < first + n; ++i)
    out.push_back({"t" + std::to_string(i / 2), i % 3, i / 2, i % 2, std::vector<int32_t>(1 + i % 5, i),
                   std::vector<int32_t>(i % 5, 40 + i % 9), -1.25 * i, i % 4, 6, i % 2 == 1});
  return out;
}

void expect_same_rollout(const Rollout& a, const Rollout& b) {
  EXPECT_EQ(a.task, b.task);
  EXPECT_EQ(a.test_index, b.test_index);
  EXPECT_EQ(a.item, b.item);
  EXPECT_EQ(a.sample, b.sample);
  EXPECT_EQ(a.prompt, b.prompt);
  EXPECT_EQ(a.answer, b.answer);
  EXPECT_EQ(a.logprob, b.logprob);
  EXPECT_EQ(a.cells_right, b.cells_right);
  EXPECT_EQ(a.cells, b.cells);
  EXPECT_EQ(a.label, b.label);
}

TEST(RolloutStore, RowsRoundTripThroughRankFilesAndTheirMaster) {
  crsm::testing::ScratchDir dir("rollout_store");
  const std::string a = (dir.path() / "rank00000.h5").string(), b = (dir.path() / "rank00001.h5").string();
  {
    crsm::data::RolloutWriter w(a, kRolloutSchema, {3, crsm::data::Compression::kGzip, 2});
    w.append(crsm::data::rollout_rows(some_rollouts(0, 7), kRolloutSchema));
    crsm::data::RolloutWriter v(b, kRolloutSchema, {4, crsm::data::Compression::kNone, 2});
    v.append(crsm::data::rollout_rows(some_rollouts(7, 5), kRolloutSchema));
  }
  const std::string master = (dir.path() / "rollouts.h5").string();
  crsm::data::write_master_file(crsm::data::rollout_format(), master, {a, b});
  const crsm::data::RolloutReader reader(master);
  ASSERT_EQ(reader.rows(), 12);
  EXPECT_EQ(reader.info().schema.plan, "plan-1");
  EXPECT_EQ(reader.info().schema.prompt_width, 5);
  const auto rows = reader.read(0, 12);
  const auto expected = some_rollouts(0, 12);
  for (int64_t r = 0; r < 12; ++r) expect_same_rollout(crsm::data::rollout_at(rows, r), expected[r]);
  EXPECT_EQ(rows.answer[0][0].item<int32_t>(), -1) << "an empty answer is all padding";
}

TEST(RolloutStore, AFieldWiderThanTheFileIsRefusedNamingIt) {
  auto wide = some_rollouts(0, 1);
  wide[0].task = "a-task-id-of-more-than-8";
  EXPECT_THROW(
      {
        try {
          crsm::data::rollout_rows(wide, kRolloutSchema);
        } catch (const std::invalid_argument& e) {
          EXPECT_NE(std::string(e.what()).find("task id \"a-task-id-of-more-than-8\" is wider than 8"), std::string::npos);
          throw;
        }
      },
      std::invalid_argument);
  auto long_answer = some_rollouts(0, 1);
  long_answer[0].answer.assign(5, 1);
  EXPECT_THROW(crsm::data::rollout_rows(long_answer, kRolloutSchema), std::invalid_argument);
}

TEST(RolloutStore, AnotherPlanIsRefusedOnReopeningNamingTheField) {
  crsm::testing::ScratchDir dir("rollout_store_plan");
  const std::string file = (dir.path() / "rank00000.h5").string();
  { crsm::data::RolloutWriter w(file, kRolloutSchema); }
  auto other = kRolloutSchema;
  other.answer_width = 6;
  try {
    crsm::data::RolloutWriter w(file, other);
    FAIL() << "reopened with another answer width";
  } catch (const crsm::data::DataError& e) {
    EXPECT_NE(std::string(e.what()).find(file + ": field 'answer_width' is 4, but this run has 6"), std::string::npos)
        << e.what();
  }
}

}  // namespace
