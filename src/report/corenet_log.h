// CoreNet's training log (what `corenet-train` prints, and the logs Apple published with
// OpenELM; docs/training.md, "Plotting"), read by `elm plot` beside elm's own train_log.jsonl.
// Every `common.log_freq` iterations CoreNet's Statistics.iter_summary
// (corenet/metrics/stats.py) logs one line,
//   2024-04-12 10:11:12 - LOGS    - Epoch:   0 [    5000/  350000], loss: {'total_loss': 3.1234,
//   ...}, grad_norm: 0.5, LR: [0.0053, 0.0053], Avg. batch load time: 0.001, Elapsed time: 12.34
// where the bracket holds the iteration and max_iterations, and the loss is the average since
// the epoch began (a plain number, or a dict whose 'total_loss' is the loss). A validation pass
// logs "*** Validation summary for epoch N" and then "loss={'total_loss': ...} || ..." (or
// "loss=X"), drawn at the last iteration seen.
#pragma once

#include <string>

#include "report/loss_plot.h"

namespace elm {

// Whether the file's first lines hold a CoreNet iteration summary ("Epoch: E [I/N], loss").
bool LooksLikeCoreNetLog(const std::string& path);
// The training and validation series of a CoreNet log; throws naming the file when it has none.
LossSeries ReadCoreNetLog(const std::string& path);

}  // namespace elm
