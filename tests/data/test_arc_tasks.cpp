// ARC task files (SPEC §5): the readers on valid and malformed files, the one text
// serialization, and the prepare-arc generator's families and its train/evaluation split.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "base/file_read.h"
#include "data/arc_generator.h"
#include "data/arc_task.h"
#include "data_test_util.h"

namespace {

namespace fs = std::filesystem;
using crsm::data::ArcTask;
using crsm::data::Grid;
using crsm::testing::data_error_of;

const char* kTask = R"({"train": [{"input": [[1, 0], [0, 2]], "output": [[0, 1], [2, 0]]},
                                  {"input": [[3, 3, 0]], "output": [[0, 3, 3]]}],
                        "test": [{"input": [[5, 0]], "output": [[0, 5]]}, {"input": [[7], [8]], "output": [[7], [8]]}]})";

class ArcTasks : public crsm::testing::DataTest {};

TEST_F(ArcTasks, ReadsADirectoryOfTaskFilesInNameOrder) {
  fs::create_directories(dir / "tasks");
  write_file("tasks/b7.json", kTask);
  write_file("tasks/a1.json", kTask);
  write_file("tasks/notes.txt", "not a task");
  const auto source = crsm::data::read_tasks(path("tasks"));
  ASSERT_EQ(source.arc.size(), 2u);
  EXPECT_EQ(source.arc[0].id, "a1");
  EXPECT_EQ(source.arc[1].id, "b7");
  EXPECT_EQ(source.arc[0].family, "arc");
  ASSERT_EQ(source.arc[0].test.size(), 2u);  // several test pairs
  EXPECT_EQ(source.arc[0].train[1].input, (Grid{{3, 3, 0}}));
  EXPECT_EQ(source.arc[0].test[1].output, (Grid{{7}, {8}}));
}

TEST_F(ArcTasks, ReadsJsonlOfArcTasksAndOfPromptAnswerTasks) {
  std::string flat = kTask;
  flat.erase(std::remove(flat.begin(), flat.end(), '\n'), flat.end());
  const auto arc = crsm::data::read_tasks(write_file("set.jsonl", flat + "\n\n" + flat + "\n"));
  ASSERT_EQ(arc.arc.size(), 2u);
  EXPECT_EQ(arc.arc[1].id, "set:3");  // file stem and line
  const auto text = crsm::data::read_tasks(
      write_file("qa.jsonl", R"({"prompt": "2+2=", "answer": "4"})" "\n" R"({"id": "q2", "prompt": "3+3=", "answer": "6"})" "\n"));
  ASSERT_EQ(text.text.size(), 2u);
  EXPECT_EQ(text.text[0].id, "qa:1");
  EXPECT_EQ(text.text[1].id, "q2");
  EXPECT_EQ(text.text[1].answer, "6");
}

// Each malformed file is refused with a message naming the file, the line and the field.
// With a limit only the first tasks are read: a long file is never parsed past them (a
// malformed line after them is not even seen), and a directory's files past them neither.
TEST_F(ArcTasks, ALimitReadsOnlyTheFirstTasks) {
  std::string one = kTask;
  one.erase(std::remove(one.begin(), one.end(), '\n'), one.end());
  const auto jsonl = write_file("many.jsonl", one + "\n\n" + one + "\n" + one + "\n{\"train\": oops\n" + one);
  const auto three = crsm::data::read_tasks(jsonl, 3);
  ASSERT_EQ(three.arc.size(), 3u);
  EXPECT_EQ(three.arc[2].id, "many:4");  // the blank line counts as a line, not as a task
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(jsonl); }).find(jsonl + " line 5"), std::string::npos);
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(jsonl, 4); }).find(jsonl + " line 5"), std::string::npos);
  const auto qa = write_file("qa.jsonl", "{\"prompt\": \"1+1=\", \"answer\": \"2\"}\n{\"prompt\": 3}\n");
  EXPECT_EQ(crsm::data::read_tasks(qa, 1).text.size(), 1u);
  fs::create_directories(dir / "tasks");
  write_file("tasks/a.json", kTask);
  write_file("tasks/b.json", kTask);
  write_file("tasks/c.json", "not json");
  EXPECT_EQ(crsm::data::read_tasks(path("tasks"), 2).arc.size(), 2u);
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(path("tasks")); }).find("c.json"), std::string::npos);
}

TEST_F(ArcTasks, RefusesMalformedFilesNamingLineAndField) {
  const std::string good = R"({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[2]], "output": [[2]]}]})";
  const struct {
    std::string line, says;
  } cases[] = {
      {R"({"train": [{"input": [[1]], "output": [[1]]}], "test": [)", "line 2: malformed JSON"},
      {R"({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": [{"input": [[2]], "output": [[2]]}]})",
       "line 2: field train[0].input[1]: ragged grid: 1 cells where row 0 has 2"},
      {R"({"train": [{"input": [[1]], "output": [[10]]}], "test": [{"input": [[2]], "output": [[2]]}]})",
       "line 2: field train[0].output[0][0]: expected an integer 0-9, got the number 10"},
      {R"({"train": [], "test": [{"input": [[2]], "output": [[2]]}]})", "line 2: field train: expected a non-empty list"},
      {R"({"train": [{"input": [[1]], "output": [[1]]}], "test": [{"input": [[2.5]], "output": [[2]]}]})",
       "line 2: field test[0].input[0][0]: expected an integer 0-9, got the number 2.5"},
      {R"({"train": [{"input": [[1]]}], "test": [{"input": [[2]], "output": [[2]]}]})", "line 2: field train[0].output: missing"},
      {R"({"train": [{"input": [[1]], "output": [[1]]}]})", "line 2: field test: missing"},
      {R"({"train": [{"input": [], "output": [[1]]}], "test": [{"input": [[2]], "output": [[2]]}]})",
       "line 2: field train[0].input: expected a grid of 1 to 30 rows, got 0 rows"},
      {"[1, 2]", "line 2: expected a JSON object, got a list"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.line);
    const auto file = write_file("bad.jsonl", good + "\n" + c.line + "\n");
    const auto message = data_error_of([&] { crsm::data::read_tasks(file); });
    EXPECT_NE(message.find(file + " " + c.says), std::string::npos) << message;
  }
  std::string wide = "[[";
  for (int c = 0; c < 31; ++c) wide += c ? ",1" : "1";
  wide += "]]";
  const auto wide_file = write_file("wide.json", R"({"train": [{"input": )" + wide +
                                                     R"(, "output": [[1]]}], "test": [{"input": [[2]], "output": [[2]]}]})");
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(wide_file); }).find("train[0].input[0]: expected a row of 1 to 30 cells, got 31"),
            std::string::npos);
  const auto two_lines = write_file("lines.jsonl", R"({"prompt": "2+2=", "answer": "4\n5"})" "\n");
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(two_lines); }).find(two_lines + " line 1: field answer: expected a non-empty string of one line"),
            std::string::npos);
  const auto twice = write_file("twice.jsonl", R"({"id": "a", "prompt": "x", "answer": "y"})" "\n" R"({"id": "a", "prompt": "z", "answer": "w"})" "\n");
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(twice); }).find(twice + " line 2: field id: task id 'a' is already used by " + twice + " line 1"),
            std::string::npos);
  const auto qa = write_file("qa.jsonl", R"({"prompt": "2+2="})" "\n");
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(qa); }).find(qa + " line 1: field answer: expected a string"),
            std::string::npos);
  fs::create_directories(dir / "empty");
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(path("empty")); }).find("no <task id>.json files"), std::string::npos);
  const auto other = write_file("tasks.csv", "a,b\n");
  EXPECT_NE(data_error_of([&] { crsm::data::read_tasks(other); }).find(other + ": expected a directory"), std::string::npos);
}

// docs/arc_format.md, exactly.
TEST_F(ArcTasks, SerializesTasksAsTheDocumentSays) {
  const auto task = crsm::data::parse_arc_task(kTask, "task", "t");
  EXPECT_EQ(crsm::data::grid_text({{1, 0}, {0, 2}}), "10\n02\n");
  EXPECT_EQ(crsm::data::arc_prompt(task, 1), "in\n10\n02\nout\n01\n20\n\nin\n330\nout\n033\n\nin\n7\n8\nout\n");
  EXPECT_EQ(crsm::data::arc_answer(task, 1), "7\n8\n\n");
  EXPECT_EQ(crsm::data::arc_training_text(task),
            "in\n10\n02\nout\n01\n20\n\nin\n330\nout\n033\n\nin\n50\nout\n05\n\nin\n7\n8\nout\n7\n8\n\n");
  EXPECT_EQ(crsm::data::parse_grid_text("12\n34\n\nin\n"), (Grid{{1, 2}, {3, 4}}));
  EXPECT_FALSE(crsm::data::parse_grid_text("x1\n").has_value());
  // A written task reads back as itself.
  const auto again = crsm::data::parse_arc_task(crsm::data::arc_task_json(task), "again", "t");
  EXPECT_EQ(crsm::data::arc_training_text(again), crsm::data::arc_training_text(task));
}

// The transformations a family may draw, each applied to a grid.
std::vector<Grid> rotations(const Grid& g) {
  std::vector<Grid> out;
  Grid r = g;
  for (int k = 0; k < 3; ++k) {
    Grid next(r[0].size(), std::vector<int>(r.size()));
    for (size_t i = 0; i < r.size(); ++i)
      for (size_t j = 0; j < r[0].size(); ++j) next[j][r.size() - 1 - i] = r[i][j];
    out.push_back(r = next);
  }
  return out;
}

Grid shifted(const Grid& g, int dr, int dc) {
  Grid out(g.size(), std::vector<int>(g[0].size(), 0));
  for (int r = 0; r < static_cast<int>(g.size()); ++r)
    for (int c = 0; c < static_cast<int>(g[0].size()); ++c) {
      const int sr = r - dr, sc = c - dc;
      if (sr >= 0 && sc >= 0 && sr < static_cast<int>(g.size()) && sc < static_cast<int>(g[0].size())) out[r][c] = g[sr][sc];
    }
  return out;
}

// Whether one transformation of the task's family maps every pair's input to its output.
bool one_transformation_explains(const ArcTask& t) {
  std::vector<crsm::data::GridPair> pairs = t.train;
  pairs.insert(pairs.end(), t.test.begin(), t.test.end());
  const auto all = [&](const std::function<Grid(const Grid&)>& f) {
    return std::all_of(pairs.begin(), pairs.end(), [&](const auto& p) { return f(p.input) == p.output; });
  };
  if (t.family == "identity") return all([](const Grid& g) { return g; });
  if (t.family == "rotation") {
    for (int k = 0; k < 3; ++k)
      if (all([k](const Grid& g) { return rotations(g)[k]; })) return true;
    return false;
  }
  if (t.family == "reflection")
    return all([](const Grid& g) { Grid o = g; std::reverse(o.begin(), o.end()); return o; }) ||
           all([](const Grid& g) { Grid o = g; for (auto& row : o) std::reverse(row.begin(), row.end()); return o; });
  if (t.family == "translation") {
    for (int dr = -1; dr <= 1; ++dr)
      for (int dc = -1; dc <= 1; ++dc)
        if ((dr || dc) && all([=](const Grid& g) { return shifted(g, dr, dc); })) return true;
    return false;
  }
  if (t.family == "scaling")
    return all([](const Grid& g) {
      Grid o(2 * g.size(), std::vector<int>(2 * g[0].size()));
      for (size_t r = 0; r < o.size(); ++r)
        for (size_t c = 0; c < o[0].size(); ++c) o[r][c] = g[r / 2][c / 2];
      return o;
    });
  if (t.family == "colour_permutation") {
    std::map<int, int> map{{0, 0}};
    std::set<int> shown;
    for (const auto& p : pairs)
      for (size_t r = 0; r < p.input.size(); ++r)
        for (size_t c = 0; c < p.input[r].size(); ++c) {
          const int from = p.input[r][c];
          if (map.count(from) && map[from] != p.output[r][c]) return false;
          map[from] = p.output[r][c];
        }
    // A permutation of 1-9, and the test inputs use only colours the demonstrations show.
    std::set<int> images;
    for (const auto& [from, to] : map) images.insert(to);
    for (const auto& p : t.train)
      for (const auto& row : p.input) shown.insert(row.begin(), row.end());
    for (const auto& p : t.test)
      for (const auto& row : p.input)
        for (int v : row)
          if (!shown.count(v)) return false;
    return images.size() == map.size();
  }
  return false;
}

TEST_F(ArcTasks, EveryGeneratedTaskIsOneTransformationOfItsFamilyWithFreshTestInputs) {
  crsm::data::ArcGeneratorOptions o;
  o.min_size = 2;
  o.max_size = 6;
  const auto tasks = crsm::data::generate_arc_tasks(o, 240, 11, "t");
  std::map<std::string, int> per_family;
  for (const auto& t : tasks) {
    SCOPED_TRACE(crsm::data::arc_task_json(t));
    per_family[t.family] += 1;
    EXPECT_TRUE(one_transformation_explains(t));
    ASSERT_EQ(t.train.size(), 3u);
    ASSERT_EQ(t.test.size(), 1u);
    for (const auto& demo : t.train) EXPECT_NE(demo.input, t.test[0].input) << "a test input repeats a demonstration";
  }
  EXPECT_EQ(per_family.size(), 6u);
  for (const auto& [family, n] : per_family) EXPECT_EQ(n, 40) << family;
}

TEST_F(ArcTasks, PrepareArcKeepsTrainingTasksApartFromEvaluationTasks) {
  crsm::data::ArcGeneratorOptions o;
  o.min_size = 2;
  o.max_size = 4;  // few grids: training tasks would meet the evaluation's often if nothing kept them apart
  const auto r = crsm::data::prepare_arc(o, 60, 3000, 5, path("arc"));
  const auto eval = crsm::data::read_tasks(r.eval_dir).arc;
  const auto train = crsm::data::read_tasks(r.train_jsonl).arc;
  ASSERT_EQ(eval.size(), 60u);
  ASSERT_EQ(train.size(), 3000u);
  std::set<std::string> held_out, eval_tasks;
  for (const auto& t : eval) {
    held_out.insert(crsm::data::grid_text(t.test[0].input));
    eval_tasks.insert(crsm::data::arc_training_text(t));
  }
  std::string corpus;
  for (const auto& t : train) {
    for (const auto& p : t.train) EXPECT_FALSE(held_out.count(crsm::data::grid_text(p.input))) << t.id;
    for (const auto& p : t.test) EXPECT_FALSE(held_out.count(crsm::data::grid_text(p.input))) << t.id;
    EXPECT_FALSE(eval_tasks.count(crsm::data::arc_training_text(t))) << t.id;
    corpus += crsm::data::arc_training_text(t) + "\n";
  }
  EXPECT_EQ(crsm::base::read_file(r.corpus), corpus);  // train.txt is the training tasks serialized
  // The same seed writes the same bytes; another seed other tasks.
  const auto again = crsm::data::prepare_arc(o, 60, 3000, 5, path("again"));
  EXPECT_EQ(crsm::base::read_file(again.corpus), crsm::base::read_file(r.corpus));
  const auto other = crsm::data::prepare_arc(o, 60, 30, 6, path("other"));
  EXPECT_NE(crsm::data::read_tasks(other.eval_dir).arc[0].test[0].input, eval[0].test[0].input);
  EXPECT_NE(data_error_of([&] { crsm::data::prepare_arc(o, 1, 1, 5, path("arc")); }).find("exists and is not an empty directory"),
            std::string::npos);
}

// data/arc is what docs/arc_format.md says wrote it.
TEST_F(ArcTasks, TheBundledTasksAreWhatPrepareArcWrites) {
  crsm::data::ArcGeneratorOptions o;
  o.min_size = 2;
  o.max_size = 4;
  const auto r = crsm::data::prepare_arc(o, 120, 6000, 2026, path("arc"));
  const fs::path bundled = fs::path(CRSM_SOURCE_DIR) / "data" / "arc";
  EXPECT_TRUE(crsm::base::read_file(r.corpus) == crsm::base::read_file((bundled / "train.txt").string()));
  int files = 0;
  for (const auto& e : fs::directory_iterator(r.eval_dir)) {
    ++files;
    EXPECT_EQ(crsm::base::read_file(e.path().string()),
              crsm::base::read_file((bundled / "eval" / e.path().filename()).string()));
  }
  EXPECT_EQ(files, 120);
  EXPECT_EQ(std::distance(fs::directory_iterator(bundled / "eval"), fs::directory_iterator()), 120);
}

TEST_F(ArcTasks, RefusesUnknownFamiliesAndImpossibleSizes) {
  crsm::data::ArcGeneratorOptions o;
  o.families = {"identity", "gravity"};
  EXPECT_NE(data_error_of([&] { crsm::data::check_arc_options(o); }).find("--families gravity: unknown family"),
            std::string::npos);
  o.families = {"identity"};
  o.min_size = 5;
  o.max_size = 4;
  EXPECT_NE(data_error_of([&] { crsm::data::check_arc_options(o); }).find("expected 2 <= min-size <= max-size <= 30"),
            std::string::npos);
}

}  // namespace
