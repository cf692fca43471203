#pragma once

#include <string>
#include <vector>

#include "metrics/metrics_log.h"

namespace crsm::metrics {

// Writes an SVG line chart of loss against step: one colour per run, train solid, val dashed
// with a marker per point, ~5 round-numbered ticks per axis, a legend and a title.
// Series without points are left out. The chart is written through base::AtomicFile, so
// an existing file is only replaced by a complete one. Throws UsageError if runs is
// empty or no run has a point, FileError if the file can't be written.
void write_loss_plot(const std::vector<RunMetrics>& runs, const std::string& output_path,
                     const std::string& title = "loss");

}  // namespace crsm::metrics
