#include "data/arc_generator.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <random>
#include <set>

#include "base/atomic_file.h"
#include "data/portable_random.h"
#include "data/temp_dir.h"

namespace crsm::data {
namespace {

namespace fs = std::filesystem;
using Rng = std::mt19937_64;
using Transform = std::function<Grid(const Grid&)>;

int64_t uniform_in(Rng& rng, int64_t lo, int64_t hi) {
  return lo + static_cast<int64_t>(uniform_below(rng, static_cast<uint64_t>(hi - lo + 1)));
}

// Sparse random grids on background 0 with colours from `palette`: objects for
// translation to move, colours for a permutation to map.
Grid random_grid(Rng& rng, int64_t rows, int64_t cols, const std::vector<int>& palette) {
  Grid g(static_cast<size_t>(rows), std::vector<int>(static_cast<size_t>(cols), 0));
  for (auto& row : g)
    for (int& v : row)
      if (uniform_below(rng, 5) < 2) v = palette[uniform_below(rng, palette.size())];
  return g;
}

bool is_blank(const Grid& g) {
  for (const auto& row : g)
    for (int v : row)
      if (v != 0) return false;
  return true;
}

// The colours of the grids' cells other than the background.
std::vector<int> colours_of(const std::vector<GridPair>& pairs) {
  std::set<int> seen;
  for (const auto& p : pairs)
    for (const auto& row : p.input)
      for (int v : row)
        if (v != 0) seen.insert(v);
  return {seen.begin(), seen.end()};
}

Grid map_cells(int64_t rows, int64_t cols, const std::function<int(int64_t, int64_t)>& cell) {
  Grid out(static_cast<size_t>(rows), std::vector<int>(static_cast<size_t>(cols)));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[r][c] = cell(r, c);
  return out;
}

int64_t rows_of(const Grid& g) { return static_cast<int64_t>(g.size()); }
int64_t cols_of(const Grid& g) { return static_cast<int64_t>(g[0].size()); }

// One family: the task's transformation, drawn once, and the input sides it needs.
struct Family {
  std::string name;
  int64_t scale = 1;  // inputs are this much smaller than outputs
  std::function<Transform(Rng&)> draw;
  // Test inputs only use colours the demonstrations show (a permutation can only be
  // read off for those).
  bool test_colours_shown = false;
};

Transform colour_permutation(Rng& rng) {
  std::vector<int64_t> colours{1, 2, 3, 4, 5, 6, 7, 8, 9};
  shuffle(colours, rng);
  return [colours](const Grid& g) {
    return map_cells(rows_of(g), cols_of(g), [&](int64_t r, int64_t c) {
      const int v = g[r][c];
      return v == 0 ? 0 : static_cast<int>(colours[static_cast<size_t>(v - 1)]);
    });
  };
}

Transform translation(Rng& rng) {
  int64_t dr = 0, dc = 0;
  while (dr == 0 && dc == 0) {
    dr = uniform_in(rng, -1, 1);
    dc = uniform_in(rng, -1, 1);
  }
  return [dr, dc](const Grid& g) {
    return map_cells(rows_of(g), cols_of(g), [&](int64_t r, int64_t c) {
      const int64_t sr = r - dr, sc = c - dc;
      return sr >= 0 && sr < rows_of(g) && sc >= 0 && sc < cols_of(g) ? g[sr][sc] : 0;
    });
  };
}

Transform reflection(Rng& rng) {
  const bool vertical_axis = uniform_below(rng, 2) == 0;
  return [vertical_axis](const Grid& g) {
    const int64_t R = rows_of(g), C = cols_of(g);
    return map_cells(R, C, [&](int64_t r, int64_t c) { return vertical_axis ? g[r][C - 1 - c] : g[R - 1 - r][c]; });
  };
}

Transform rotation(Rng& rng) {
  const int64_t quarter_turns = uniform_in(rng, 1, 3);
  return [quarter_turns](const Grid& g) {
    Grid out = g;
    for (int64_t k = 0; k < quarter_turns; ++k) {  // clockwise
      const Grid in = out;
      const int64_t R = rows_of(in), C = cols_of(in);
      out = map_cells(C, R, [&](int64_t r, int64_t c) { return in[R - 1 - c][r]; });
    }
    return out;
  };
}

Transform scaling(Rng&) {
  return [](const Grid& g) {
    return map_cells(2 * rows_of(g), 2 * cols_of(g), [&](int64_t r, int64_t c) { return g[r / 2][c / 2]; });
  };
}

const std::vector<Family>& families() {
  static const std::vector<Family> all = {
      {"identity", 1, [](Rng&) -> Transform { return [](const Grid& g) { return g; }; }},
      {"colour_permutation", 1, colour_permutation, true},
      {"translation", 1, translation},
      {"reflection", 1, reflection},
      {"rotation", 1, rotation},
      {"scaling", 2, scaling},
  };
  return all;
}

const Family& family_named(const std::string& name) {
  for (const auto& f : families())
    if (f.name == name) return f;
  throw DataError("--families " + name + ": unknown family (expected some of identity, colour_permutation, "
                  "translation, reflection, rotation, scaling)");
}

// An input with at least one coloured cell that no earlier pair of the task and nothing
// in `used` has. Sides of 2 or more give thousands of sparse grids, so a few draws
// suffice; a tiny scaled family may not.
Grid fresh_input(Rng& rng, const Family& f, const ArcGeneratorOptions& o, const std::set<std::string>& used,
                 const std::vector<int>& palette) {
  const int64_t lo = std::max<int64_t>(1, o.min_size / f.scale), hi = std::max<int64_t>(lo, o.max_size / f.scale);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    Grid g = random_grid(rng, uniform_in(rng, lo, hi), uniform_in(rng, lo, hi), palette);
    if (!is_blank(g) && !used.count(grid_text(g))) return g;
  }
  throw DataError("prepare-arc: cannot draw distinct inputs of sides " + std::to_string(lo) + " to " +
                  std::to_string(hi) + " for family " + f.name + ": raise --max-size");
}

ArcTask generate_task(Rng& rng, const Family& f, const ArcGeneratorOptions& o, const std::string& id,
                      const std::set<std::string>& exclude) {
  ArcTask t;
  t.id = id;
  t.family = f.name;
  const Transform transform = f.draw(rng);
  std::set<std::string> used = exclude;
  const std::vector<int> all_colours{1, 2, 3, 4, 5, 6, 7, 8, 9};
  for (int64_t i = 0; i < o.train_pairs + o.test_pairs; ++i) {
    const bool test = i >= o.train_pairs;
    Grid in = fresh_input(rng, f, o, used, test && f.test_colours_shown ? colours_of(t.train) : all_colours);
    used.insert(grid_text(in));
    Grid out = transform(in);
    (test ? t.test : t.train).push_back({std::move(in), std::move(out)});
  }
  return t;
}

}  // namespace

const std::vector<std::string>& arc_family_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& f : families()) n.push_back(f.name);
    return n;
  }();
  return names;
}

void check_arc_options(const ArcGeneratorOptions& o) {
  if (o.families.empty()) throw DataError("--families: expected at least one family");
  for (const auto& name : o.families) family_named(name);
  if (o.min_size < 2 || o.max_size > kMaxGridSide || o.min_size > o.max_size)
    throw DataError("--min-size " + std::to_string(o.min_size) + " --max-size " + std::to_string(o.max_size) +
                    ": expected 2 <= min-size <= max-size <= 30");
  if (o.train_pairs < 1) throw DataError("--train-pairs " + std::to_string(o.train_pairs) + ": expected at least 1");
  if (o.test_pairs < 1) throw DataError("prepare-arc: test pairs per task " + std::to_string(o.test_pairs) + ": expected at least 1");
}

std::vector<ArcTask> generate_arc_tasks(const ArcGeneratorOptions& o, int64_t count, uint64_t seed,
                                        const std::string& prefix, const std::vector<std::string>& exclude) {
  check_arc_options(o);
  Rng rng(seed);
  const std::set<std::string> excluded(exclude.begin(), exclude.end());
  std::vector<ArcTask> tasks;
  char index[32];
  for (int64_t i = 0; i < count; ++i) {
    const Family& f = family_named(o.families[static_cast<size_t>(i) % o.families.size()]);
    std::snprintf(index, sizeof index, "%05lld", static_cast<long long>(i));
    tasks.push_back(generate_task(rng, f, o, prefix + "-" + f.name + "-" + index, excluded));
  }
  return tasks;
}

PrepareArcResult prepare_arc(const ArcGeneratorOptions& o, int64_t eval_tasks, int64_t train_tasks, uint64_t seed,
                             const std::string& output) {
  check_arc_options(o);
  const fs::path out =
      fresh_output(output, "--output " + output + ": exists and is not an empty directory (choose a new one)");
  const auto eval = generate_arc_tasks(o, eval_tasks, stream_seed(seed, 1), "eval");
  std::vector<std::string> held_out;
  for (const auto& t : eval)
    for (const auto& p : t.test) held_out.push_back(grid_text(p.input));
  const auto train = generate_arc_tasks(o, train_tasks, stream_seed(seed, 0), "train", held_out);

  // Written beside the output and renamed into place: a failure leaves nothing behind.
  StagedOutput staging(out);
  const fs::path stage(staging.path());
  fs::create_directory(stage / "eval");
  for (const auto& t : eval) base::write_file_atomically((stage / "eval" / (t.id + ".json")).string(), arc_task_json(t) + "\n");
  std::string jsonl, corpus;
  for (const auto& t : train) {
    jsonl += arc_task_json(t) + "\n";
    corpus += arc_training_text(t) + "\n";
  }
  base::write_file_atomically((stage / "train.jsonl").string(), jsonl);
  base::write_file_atomically((stage / "train.txt").string(), corpus);
  staging.publish("--output " + output);
  return {eval_tasks, train_tasks, (fs::path(output) / "eval").string(), (fs::path(output) / "train.jsonl").string(),
          (fs::path(output) / "train.txt").string()};
}

}  // namespace crsm::data
