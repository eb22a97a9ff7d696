// A training run owns its run folder (results_loc/run_label: checkpoints/, train_log.jsonl,
// config.yaml). A new run never writes into a folder that holds another run: `elm train` refuses
// one unless the run resumes it (--resume, common.auto_resume with a checkpoint there) or the user
// asks to start over (--overwrite), which removes elm's own files first (docs/training.md, "Run
// folders").
#pragma once

#include <string>

namespace elm {

// What the folder holds that a fresh run would clobber: "" when it is absent or empty (an empty
// checkpoints/ folder left by a run that stopped before its first checkpoint counts as empty),
// else a short description ("train_log.jsonl, checkpoints/step_00000300, ...").
std::string RunFolderContents(const std::string& run_dir);

// Prepares `run_dir` for a run. `resuming`: the run continues a checkpoint (its log is kept up
// to that step). Otherwise a folder with contents is an error naming it and both options, unless
// `overwrite`: then elm's own files there (checkpoints/, train_log.jsonl, config.yaml and the
// temporary files of their atomic writes) are removed; anything else in it is left alone and is
// an error, so --overwrite never deletes a file elm did not write.
void PrepareRunFolder(const std::string& run_dir, bool resuming, bool overwrite);

}  // namespace elm
