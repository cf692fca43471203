#include "data/arc_task.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/file_read.h"

namespace crsm::data {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

[[noreturn]] void refuse(const std::string& where, const std::string& field, const std::string& what) {
  throw DataError(where + ": " + (field.empty() ? "" : "field " + field + ": ") + what);
}

std::string kind_of(const json& j) {
  if (j.is_array()) return "a list";
  if (j.is_object()) return "an object";
  if (j.is_string()) return "a string";
  if (j.is_null()) return "null";
  if (j.is_boolean()) return "a boolean";
  return "the number " + j.dump();
}

Grid parse_grid(const json& j, const std::string& where, const std::string& field) {
  if (!j.is_array() || j.empty() || j.size() > kMaxGridSide)
    refuse(where, field, "expected a grid of 1 to 30 rows, got " + (j.is_array() ? std::to_string(j.size()) + " rows" : kind_of(j)));
  Grid grid;
  for (size_t r = 0; r < j.size(); ++r) {
    const std::string row_field = field + "[" + std::to_string(r) + "]";
    const json& row = j[r];
    if (!row.is_array() || row.empty() || row.size() > kMaxGridSide)
      refuse(where, row_field, "expected a row of 1 to 30 cells, got " + (row.is_array() ? std::to_string(row.size()) + " cells" : kind_of(row)));
    if (r > 0 && row.size() != grid[0].size())
      refuse(where, row_field, "ragged grid: " + std::to_string(row.size()) + " cells where row 0 has " +
                                   std::to_string(grid[0].size()));
    std::vector<int> cells;
    for (size_t c = 0; c < row.size(); ++c) {
      const json& v = row[c];
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 9)
        refuse(where, row_field + "[" + std::to_string(c) + "]", "expected an integer 0-9, got " + kind_of(v));
      cells.push_back(v.get<int>());
    }
    grid.push_back(std::move(cells));
  }
  return grid;
}

std::vector<GridPair> parse_pairs(const json& task, const char* key, const std::string& where) {
  if (!task.contains(key)) refuse(where, key, "missing (expected a list of {\"input\", \"output\"} pairs)");
  const json& list = task[key];
  if (!list.is_array() || list.empty())
    refuse(where, key, "expected a non-empty list of {\"input\", \"output\"} pairs, got " +
                           (list.is_array() ? std::string("an empty list") : kind_of(list)));
  std::vector<GridPair> pairs;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string field = std::string(key) + "[" + std::to_string(i) + "]";
    if (!list[i].is_object()) refuse(where, field, "expected an object with \"input\" and \"output\", got " + kind_of(list[i]));
    GridPair p;
    for (const char* side : {"input", "output"})
      if (!list[i].contains(side)) refuse(where, field + "." + side, "missing");
    p.input = parse_grid(list[i]["input"], where, field + ".input");
    p.output = parse_grid(list[i]["output"], where, field + ".output");
    pairs.push_back(std::move(p));
  }
  return pairs;
}

json parse_object(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    refuse(where, "", std::string("malformed JSON (") + e.what() + ")");
  }
  if (!j.is_object()) refuse(where, "", "expected a JSON object, got " + kind_of(j));
  return j;
}

std::string string_field(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key) || !j[key].is_string()) refuse(where, key, "expected a string");
  return j[key].get<std::string>();
}

ArcTask arc_from(const json& j, const std::string& where, const std::string& id) {
  ArcTask t;
  t.id = j.contains("id") ? string_field(j, "id", where) : id;
  t.family = j.contains("family") ? string_field(j, "family", where) : "arc";
  t.train = parse_pairs(j, "train", where);
  t.test = parse_pairs(j, "test", where);
  return t;
}

// Task ids name results: each may stand once per source.
class IdRegister {
 public:
  void add(const std::string& id, const std::string& where) {
    const auto [it, fresh] = first_.emplace(id, where);
    if (!fresh) refuse(where, "id", "task id '" + id + "' is already used by " + it->second);
  }

 private:
  std::map<std::string, std::string> first_;
};

void read_jsonl(const std::string& path, int64_t max_tasks, TaskSource& out) {
  IdRegister ids;
  const std::string stem = fs::path(path).stem().string();
  bool text_tasks = false;
  base::for_each_line(path, [&](const std::string& line, int64_t n) {
    if (max_tasks > 0 && static_cast<int64_t>(out.arc.size() + out.text.size()) >= max_tasks) return false;
    if (line.find_first_not_of(" \t\r") == std::string::npos) return true;
    const std::string where = path + " line " + std::to_string(n);
    const json j = parse_object(line, where);
    const std::string id = stem + ":" + std::to_string(n);
    if (out.arc.empty() && out.text.empty()) text_tasks = j.contains("prompt");
    if (text_tasks) {
      out.text.push_back({j.contains("id") ? string_field(j, "id", where) : id, string_field(j, "prompt", where),
                          string_field(j, "answer", where)});
      const std::string& answer = out.text.back().answer;
      // The model answers on one line: a line end inside the answer could never match.
      if (answer.empty() || answer.find('\n') != std::string::npos)
        refuse(where, "answer", "expected a non-empty string of one line");
      ids.add(out.text.back().id, where);
    } else {
      out.arc.push_back(arc_from(j, where, id));
      ids.add(out.arc.back().id, where);
    }
    return true;
  });
  if (out.arc.empty() && out.text.empty()) refuse(path, "", "no tasks (expected one JSON object per line)");
}

}  // namespace

ArcTask parse_arc_task(const std::string& text, const std::string& where, const std::string& id) {
  return arc_from(parse_object(text, where), where, id);
}

TaskSource read_tasks(const std::string& path, int64_t max_tasks) {
  TaskSource out;
  out.path = path;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    for (const auto& e : fs::directory_iterator(path))
      if (e.path().extension() == ".json") files.push_back(e.path());
    std::sort(files.begin(), files.end());
    if (files.empty()) refuse(path, "", "no <task id>.json files in this directory");
    if (max_tasks > 0 && static_cast<int64_t>(files.size()) > max_tasks) files.resize(static_cast<size_t>(max_tasks));
    IdRegister ids;
    for (const auto& f : files) {
      out.arc.push_back(parse_arc_task(base::read_file(f.string()), f.string(), f.stem().string()));
      ids.add(out.arc.back().id, f.string());
    }
  } else if (fs::path(path).extension() == ".jsonl") {
    read_jsonl(path, max_tasks, out);
  } else if (fs::path(path).extension() == ".json") {
    out.arc.push_back(parse_arc_task(base::read_file(path), path, fs::path(path).stem().string()));
  } else {
    refuse(path, "", "expected a directory of <task id>.json files, a .json task or a .jsonl file of tasks");
  }
  return out;
}

std::string grid_text(const Grid& grid) {
  std::string s;
  for (const auto& row : grid) {
    for (int v : row) s += static_cast<char>('0' + v);
    s += '\n';
  }
  return s;
}

std::string pair_text(const GridPair& pair) {
  return "in\n" + grid_text(pair.input) + "out\n" + grid_text(pair.output) + "\n";
}

std::string arc_prompt(const ArcTask& task, size_t test_index) {
  std::string s;
  for (const auto& p : task.train) s += pair_text(p);
  return s + "in\n" + grid_text(task.test.at(test_index).input) + "out\n";
}

std::string arc_answer(const ArcTask& task, size_t test_index) {
  return grid_text(task.test.at(test_index).output) + "\n";
}

std::string arc_training_text(const ArcTask& task) {
  std::string s;
  for (const auto& p : task.train) s += pair_text(p);
  for (const auto& p : task.test) s += pair_text(p);
  return s;
}

std::optional<Grid> parse_grid_text(const std::string& text) {
  Grid grid;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line) && !line.empty()) {
    if (line.find_first_not_of("0123456789") != std::string::npos) break;
    std::vector<int> row;
    for (char c : line) row.push_back(c - '0');
    grid.push_back(std::move(row));
  }
  if (grid.empty()) return std::nullopt;
  return grid;
}

std::string arc_task_json(const ArcTask& task) {
  // In the ARC repository's order: train before test, input before output.
  using ordered = nlohmann::ordered_json;
  const auto pairs = [](const std::vector<GridPair>& ps) {
    ordered list = ordered::array();
    for (const auto& p : ps) list.push_back({{"input", p.input}, {"output", p.output}});
    return list;
  };
  ordered j = {{"train", pairs(task.train)}, {"test", pairs(task.test)}, {"id", task.id}, {"family", task.family}};
  return j.dump();
}

}  // namespace crsm::data
