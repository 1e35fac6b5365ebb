// Built-in synthetic verifiable tasks: seeded generators of problems with exact answers and worked
// solutions whose length varies with the problem (so chains of thought have something to shrink).
// Their answers and metadata follow the contracts of the built-in `task` reward's verifiers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/status.h"
#include "data/example.h"

namespace chainrl::data {

enum class Split { kTrain, kEval };

// Options of a task generator; one-to-one with the config keys data.task, data.task_min_size,
// data.task_max_size and run.seed.
struct TaskOptions {
  std::string family = "arithmetic";  // "arithmetic" | "countdown"
  int min_size = 1;  // arithmetic: operand digits; countdown: numbers to combine minus 2
  int max_size = 3;
  // arithmetic: the operations drawn, any non-empty subset of "+-*" (each problem picks one
  // uniformly).
  std::string ops = "+-*";
  uint64_t seed = 0;
  // Fraction of solutions written with every step in words (verbose), with the same steps in
  // terse notation (compact: arithmetic only; the other families write it verbose), with the result
  // of each step only (brief), and with the answer alone (direct); normalised. A warm-up on this mix
  // gives RL both long and short chains to choose from.
  double verbose_fraction = 0.6;
  double compact_fraction = 0.0;
  double brief_fraction = 0.3;
  double direct_fraction = 0.1;
};

// Generates `count` examples of `split`. A problem belongs to exactly one split (decided by a hash
// of its canonical form), so held-out problems never appear in training. Deterministic in
// (options, split, count): the same call returns the same examples. When the problem space of the
// chosen sizes is smaller than `count`, training examples repeat; held-out examples never do (fewer
// are returned). InvalidArgument for an unknown family, min > max, or sizes out of range
// (arithmetic: 1..9 digits; countdown: 1..4, i.e. 3..6 numbers).
Result<std::vector<Example>> GenerateTask(const TaskOptions& options, Split split, int64_t count);

// The options of a run's built-in task: data.task, data.task_min_size, data.task_max_size,
// data.task_ops, data.task_{verbose,compact,brief,direct}_fraction and run.seed.
TaskOptions TaskOptionsFromConfig(const Config& config);

// The task families GenerateTask knows.
const std::vector<std::string>& TaskFamilies();

}  // namespace chainrl::data
