#include <cstdio>

#include "cli/commands.h"
#include "cli/options.h"
#include "cli/outputs.h"
#include "data/arc_generator.h"
#include "dist/runtime.h"

namespace crsm::cli {
namespace {

const std::vector<Option>& prepare_arc_options() {
  static const std::vector<Option> table = {
      Option("output", Constraint::path(), "new directory for eval/<id>.json, train.jsonl and train.txt").mandatory(),
      Option("tasks", Constraint::integer(1, 1 << 20), "evaluation tasks").with_default("100"),
      Option("train-tasks", Constraint::integer(1, 1 << 22), "training tasks (serialized into train.txt)").with_default("2000"),
      Option("seed", Constraint::integer(0, (int64_t{1} << 62)), "generator seed (evaluation and training tasks use two streams of it)").with_default("0"),
      Option("families", Constraint::word(data::arc_family_names()), "task families, cycled through").many(),
      Option("min-size", Constraint::integer(2, data::kMaxGridSide), "smallest grid side").with_default("3"),
      Option("max-size", Constraint::integer(2, data::kMaxGridSide), "largest grid side").with_default("5"),
      Option("train-pairs", Constraint::integer(1, 16), "demonstrations per task").with_default("3"),
  };
  return table;
}

}  // namespace

int prepare_arc_command(int argc, char** argv) {
  const auto parsed = parse_options(argc, argv, "usage: crsm_train prepare-arc --output DIR [--tasks N] [--seed S] [options]",
                                    prepare_arc_options());
  if (!parsed) return 0;
  const ParsedOptions& o = *parsed;
  dist::stop_if_preempted("prepare-arc", "before writing anything: rerun the command");
  check_output_directory("--output", o.text("output"), {});
  data::ArcGeneratorOptions g;
  if (o.given("families")) g.families = o.texts("families");
  g.min_size = o.integer("min-size");
  g.max_size = o.integer("max-size");
  g.train_pairs = o.integer("train-pairs");
  const auto r = data::prepare_arc(g, o.integer("tasks"), o.integer("train-tasks"),
                                   static_cast<uint64_t>(o.integer("seed")), o.text("output"));
  std::printf("prepare-arc: %lld evaluation tasks in %s, %lld training tasks in %s and %s\n",
              static_cast<long long>(r.eval_tasks), r.eval_dir.c_str(), static_cast<long long>(r.train_tasks),
              r.train_jsonl.c_str(), r.corpus.c_str());
  return 0;
}

}  // namespace crsm::cli
