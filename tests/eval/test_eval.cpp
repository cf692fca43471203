// The planning evaluation's pieces (SPEC §9): items, answer endings, scores, intervals,
// calibration, modes, and the driver on one rank with a tiny model.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "../model/test_helpers.h"
#include "data/tokenizer.h"
#include "dist/communicator.h"
#include "eval/decoding.h"
#include "eval/eval_items.h"
#include "eval/planning_eval.h"
#include "model/generation.h"

namespace crsm::eval {
namespace {

data::ArcTask two_test_task() {
  return data::parse_arc_task(R"({"train": [{"input": [[1, 2]], "output": [[2, 1]]}],
                                  "test": [{"input": [[3, 4]], "output": [[4, 3]]}, {"input": [[5]], "output": [[5]]}]})",
                              "t.json", "t");
}

TEST(EvalItems, OneItemPerTestOutputAndPerPromptAnswerTask) {
  data::TaskSource arc{"arc_dir", {two_test_task()}, {}};
  data::TaskSource text{"qa.jsonl", {}, {{"q1", "2+2=", "4"}}};
  const auto items = eval_items({arc, text});
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[1].test_index, 1);
  EXPECT_EQ(items[1].prompt, "in\n12\nout\n21\n\nin\n5\nout\n");
  EXPECT_EQ(items[1].answer, "5\n\n");
  EXPECT_EQ(items[1].file, "arc_dir");
  EXPECT_EQ(items[2].kind, AnswerKind::kText);
  EXPECT_EQ(items[2].family, "text");
  EXPECT_EQ(items[2].answer, "4\n");
}

TEST(EvalItems, AnswersEndAtABlankLineOrTheEndOfTheLine) {
  EXPECT_FALSE(answer_ended(AnswerKind::kGrid, "12\n34\n"));
  EXPECT_TRUE(answer_ended(AnswerKind::kGrid, "12\n34\n\n"));
  EXPECT_TRUE(answer_ended(AnswerKind::kGrid, "\n"));
  EXPECT_FALSE(answer_ended(AnswerKind::kText, "42"));
  EXPECT_TRUE(answer_ended(AnswerKind::kText, "42\n"));
}

TEST(EvalItems, ScoresExactMatchAndCellsInPlace) {
  const auto item = eval_items({{"d", {two_test_task()}, {}}})[0];  // expects 43
  const auto right = score_answer(item, "43\n\n");
  EXPECT_TRUE(right.exact);
  EXPECT_EQ(right.cells_right, 2);
  const auto half = score_answer(item, "44\n\n");
  EXPECT_FALSE(half.exact);
  EXPECT_EQ(half.cells_right, 1);
  EXPECT_EQ(half.cells, 2);
  EXPECT_FALSE(score_answer(item, "43\n").exact);  // never ended
  EXPECT_EQ(score_answer(item, "43\n").cells_right, 2);
  EXPECT_EQ(score_answer(item, "4\n\n").cells_right, 1);  // a missing cell is wrong
  EXPECT_EQ(score_answer(item, "zz\n").cells_right, 0);
}

TEST(EvalStatistics, WilsonIntervalsOfKnownCounts) {
  auto [lo, hi] = wilson_interval(0, 10);
  EXPECT_NEAR(lo, 0.0, 1e-12);
  EXPECT_NEAR(hi, 0.27753, 1e-4);
  std::tie(lo, hi) = wilson_interval(5, 10);
  EXPECT_NEAR(lo, 0.23659, 1e-4);
  EXPECT_NEAR(hi, 0.76341, 1e-4);
  std::tie(lo, hi) = wilson_interval(0, 0);
  EXPECT_EQ(lo, 0.0);
  EXPECT_EQ(hi, 1.0);
}

TEST(EvalStatistics, ExpectedCalibrationErrorByHand) {
  // Bin [0.9, 1]: two predictions of 0.95, one right: |0.5 - 0.95| * 2/4. Bin [0.1, 0.2):
  // two of 0.15, neither right: |0 - 0.15| * 2/4. Total 0.225 + 0.075.
  const std::vector<Prediction> p = {{0.95, true}, {0.95, false}, {0.15, false}, {0.15, false}};
  EXPECT_NEAR(expected_calibration_error(p), 0.3, 1e-12);
  EXPECT_NEAR(expected_calibration_error({{1.7, true}, {-3.0, false}}), 0.0, 1e-12);  // clamped: perfect
  EXPECT_NEAR(expected_calibration_error({{NAN, true}, {0.95, true}, {0.95, false}}), 0.45, 1e-12);  // NaN left out
  EXPECT_EQ(expected_calibration_error({}), 0.0);
}

TEST(EvalModes, ParsesCommaListsAndRefusesTheRest) {
  const auto modes = eval_modes("mcts+inject,greedy");
  ASSERT_EQ(modes.size(), 2u);
  EXPECT_TRUE(modes[0].search && modes[0].inject);
  EXPECT_FALSE(modes[1].search);
  for (const char* bad : {"", "greedy,", "beams", "beam@0", "beam-row@", "beam,beam@4", "greedy,greedy", "mcts inject", "greedy@4", "sample@2", "vote@0",
                          "vote@x", "vote@", "vote@5000", "vote@-1", "vote@8,vote@8", "vote,vote@16"})
    EXPECT_NE(mode_list_problem(bad), "") << bad;
  EXPECT_EQ(mode_list_problem("greedy,mcts"), "");
  EXPECT_NE(mode_list_problem("greedy,greedy").find("duplicate decoding mode 'greedy'"), std::string::npos);
  EXPECT_NE(mode_list_problem("vote,vote@16").find("duplicate decoding mode 'vote@16'"), std::string::npos);
}

TEST(EvalModes, SamplingModesTakeTheirNOrTheDefaultAndABudgetSetsIt) {
  auto modes = eval_modes("vote@8,pass,sample,logprob@3,greedy,mcts", 5);
  std::vector<std::string> names;
  for (const auto& m : modes) names.push_back(m.name);
  EXPECT_EQ(names, (std::vector<std::string>{"vote@8", "pass@5", "sample", "logprob@3", "greedy", "mcts"}));
  EXPECT_EQ(modes[0].pick, Pick::kVote);
  EXPECT_EQ(modes[1].pick, Pick::kOracle);
  EXPECT_EQ(modes[2].samples, 1);
  EXPECT_EQ(modes[4].samples, 0);
  EXPECT_EQ(apply_budget(modes, 4), 3);  // mcts: 3 simulations beside each token's step
  EXPECT_EQ(modes[0].name, "vote@4");
  EXPECT_EQ(modes[1].samples, 4);
  EXPECT_EQ(modes[2].name, "sample");  // one sample, whatever the budget
  EXPECT_EQ(apply_budget(modes, 1), 1);
}

TEST(EvalModes, ABeamIsAsWideAsItsWOrTheSquareRootOfTheSamplesOrOfTheBudget) {
  auto modes = eval_modes("beam,beam-row@3,vote", 10);
  EXPECT_EQ(modes[0].name, "beam@3");  // 3 x 3 <= 10 < 4 x 4
  EXPECT_EQ(modes[0].pick, Pick::kBeam);
  EXPECT_EQ(modes[0].width, 3);
  EXPECT_EQ(modes[0].samples, 0);  // it samples nothing
  EXPECT_TRUE(modes[0].search);    // it looks ahead with the planner
  EXPECT_EQ(modes[1].pick, Pick::kBeamBlock);
  EXPECT_EQ(modes[1].width, 3);
  apply_budget(modes, 16);
  EXPECT_EQ(modes[0].name, "beam@4");
  EXPECT_EQ(modes[1].name, "beam-row@4");
  EXPECT_EQ(modes[2].name, "vote@16");
  apply_budget(modes, 3);
  EXPECT_EQ(modes[0].width, 1);
}

SampledAnswer answer(const std::string& text, double logprob, double value, bool exact, int64_t tokens) {
  SampledAnswer a;
  a.text = text;
  a.logprob = logprob;
  a.value = value;
  a.score.exact = exact;
  a.tokens.assign(static_cast<size_t>(tokens), 0);
  return a;
}

// Each pick by its rule, among the first N answers, with ties to the earliest.
TEST(EvalModes, EachPickChoosesByItsRule) {
  const SampledAnswers answers{10, 0.5, {answer("x", -1, 0.2, false, 3), answer("y", -3, 0.9, true, 4),
                                         answer("x", -2, 0.1, false, 5), answer("z", -0.5, 0.3, false, 6)}};
  const auto picked = [&](const std::string& mode) { return pick_answer(eval_modes(mode)[0], answers); };
  EXPECT_EQ(picked("vote@4").text, "x");
  EXPECT_EQ(picked("logprob@4").text, "z");
  EXPECT_EQ(picked("logprob@3").text, "x");
  EXPECT_EQ(picked("value@4").text, "y");
  EXPECT_EQ(picked("value-vote@4").text, "y");  // x: 0.3, y: 0.9, z: 0.3
  EXPECT_EQ(picked("value-vote@3").text, "y");
  EXPECT_TRUE(picked("pass@4").score.exact);
  EXPECT_FALSE(picked("pass@1").score.exact);
  EXPECT_EQ(picked("sample").text, "x");
  // The prompt once, then every sample's tokens; a value pick evaluates each sample's value.
  EXPECT_EQ(picked("vote@4").compute.prompt_steps, 10);
  EXPECT_EQ(picked("vote@4").compute.answer_steps, 3 + 4 + 5 + 6);
  EXPECT_EQ(picked("vote@2").compute.answer_steps, 3 + 4);
  EXPECT_EQ(picked("sample").seconds, 0.5);  // the prompt's time, charged to every mode that reads it
  EXPECT_EQ(picked("vote@4").compute.value_evals, 0);
  EXPECT_EQ(picked("value@4").compute.value_evals, 4);
  // Each answer's value against whether it was right, for the outcome calibration.
  const auto outcomes = picked("vote@3").outcomes;
  ASSERT_EQ(outcomes.size(), 3u);
  EXPECT_EQ(outcomes[1].probability, 0.9);
  EXPECT_TRUE(outcomes[1].correct);
}

TEST(EvalStatistics, RocAucCountsRightAboveWrongWithTiesAsHalves) {
  // Pairs (right, wrong): 0.9 > 0.8, 0.9 > 0.1, 0.7 < 0.8, 0.7 > 0.1: three of four.
  EXPECT_DOUBLE_EQ(roc_auc({{0.9, true}, {0.8, false}, {0.7, true}, {0.1, false}}), 0.75);
  EXPECT_DOUBLE_EQ(roc_auc({{0.5, true}, {0.5, false}}), 0.5);
  EXPECT_DOUBLE_EQ(roc_auc({{0.2, true}, {0.6, false}, {0.6, true}, {NAN, false}}), 0.25);  // 0 + half of one tie
  EXPECT_TRUE(std::isnan(roc_auc({{0.3, true}, {0.4, true}})));
  EXPECT_TRUE(std::isnan(roc_auc({})));
}

TEST(EvalStatistics, ExactMcNemarOfKnownCounts) {
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(0, 0), 1.0);
  EXPECT_NEAR(mcnemar_exact_p(0, 5), 2.0 / 32, 1e-12);
  EXPECT_NEAR(mcnemar_exact_p(9, 1), 2.0 * 11 / 1024, 1e-12);
  EXPECT_DOUBLE_EQ(mcnemar_exact_p(4, 4), 1.0);
  EXPECT_NEAR(mcnemar_exact_p(30, 10), 0.002221, 1e-6);  // scipy.stats.binomtest(10, 40).pvalue
  EXPECT_LT(mcnemar_exact_p(0, 2000), 1e-300);  // far in the tail, and no NaN
}

// The driver on one rank: an answer the tiny model's greedy decoding gives is exact in
// greedy mode; a prompt over max_prompt_tokens is skipped, and counted.
TEST(PlanningEval, CountsExactAnswersAndSkippedPrompts) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  auto config = testing::tiny_model_config();
  config.vocab_size = 258;
  model::Backbone backbone(config);
  backbone->eval();
  const auto tokenizer = data::make_byte_tokenizer();
  const std::string prompt = "ab";
  std::vector<int64_t> tokens;
  for (int32_t t : tokenizer->encode(prompt)) tokens.push_back(t);
  model::SamplingOptions greedy;
  greedy.temperature = 0;
  std::vector<int32_t> out;
  for (int64_t t : model::generate(backbone, tokens, 4, greedy, 0)) out.push_back(static_cast<int32_t>(t));
  const std::string said = tokenizer->decode(out);
  ASSERT_EQ(said.find('\n'), std::string::npos) << "pick another seed: the greedy text holds a line end";

  data::TaskSource text{"qa.jsonl", {}, {{"right", prompt, said.substr(0, 3)}, {"long", std::string(40, 'x'), "y"}}};
  EvalSetup s;
  s.backbone = backbone;
  s.planner = std::make_shared<search::ExactModel>(backbone);
  s.tokenizer = tokenizer.get();
  s.search.n_simulations = 4;
  s.modes = eval_modes("greedy,mcts");
  s.max_prompt_tokens = 16;
  s.max_new_tokens = 3;  // the answer's three characters, then it stops without the line end
  auto comm = dist::make_local_communicator();
  const auto report = run_planning_eval(s, eval_items({text}), *comm);
  const auto& g = report["modes"]["greedy"];
  EXPECT_EQ(g["tasks"], 1);
  EXPECT_EQ(g["skipped"], 1);
  EXPECT_EQ(g["solved"], 0);  // the answer never ended: its line end was not generated
  EXPECT_EQ(report["items"][0]["answers"]["greedy"]["text"], nlohmann::json::parse(dump_text(said.substr(0, 3))));
  EXPECT_EQ(g["calibration"]["tokens"], 3);
  EXPECT_EQ(g["calibration"]["token_accuracy"], 1.0);
  EXPECT_TRUE(report["items"][1]["skipped"].get<bool>());
  EXPECT_GT(report["modes"]["mcts"]["search"]["searches"].get<int64_t>(), 0);
  const auto table = format_eval_report(report);
  EXPECT_NE(table.find("greedy           0/1      0.0% [ 0.0, 79.3]"), std::string::npos) << table;

  // Every prompt too long: counted as skipped, and the report still prints.
  s.max_prompt_tokens = 1;
  const auto none = run_planning_eval(s, eval_items({text}), *comm);
  EXPECT_EQ(none["modes"]["greedy"]["tasks"], 0);
  EXPECT_EQ(none["modes"]["greedy"]["skipped"], 2);
  EXPECT_NE(format_eval_report(none).find("by family"), std::string::npos);
}

}  // namespace
}  // namespace crsm::eval
