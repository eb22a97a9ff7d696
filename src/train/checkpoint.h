// Training checkpoints (llm.c): everything a run needs to continue bit for bit.
//
//   <run_dir>/checkpoints/step_00000100/
//     config.json, model.safetensors   the weights as an HF model folder (F32): every inference
//                                      command loads it (elm generate --model <this folder>)
//     optimizer.safetensors            AdamW moments, tensors "m.<name>" and "v.<name>" (F32)
//     trainer_state.json               format version, step, data-loader position, seed, tokens
//                                      seen, the model shape fingerprint, MPI world size
//     tokenizer.json                   only when the run used a custom tokenizer
//     DONE                             written last: a folder without it is incomplete and
//                                      never resumed from
//
// Sharded data parallelism (train/sharding.h) writes the moments as one file per rank instead of
// optimizer.safetensors: optimizer-00001-of-00004.safetensors holds m.<name>, v.<name> of the
// whole tensors rank 1 owns, each written atomically by its rank; rank 0 then writes
// manifest.json (the rank count and every shard's file and size), trainer_state.json and DONE.
// A rank killed while writing leaves no DONE, so the previous checkpoint stays the newest
// complete one. Moments are found by tensor name, so any rank count (or one process) loads any
// checkpoint: resuming re-shards.
//
// A LoRA run's checkpoint holds the adapter instead of the weights (the base stays in
// elm.init_from): adapter_config.json + adapter_model.safetensors, so the folder is itself a PEFT
// adapter (elm generate --lora <this folder>), and the adapter's moments in optimizer.safetensors.
// One path writes and reads both: the slab's WriteWeights/ReadWeights (train/slab.h) choose the
// weights' folder format, the rest is the same.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "train/data_loader.h"
#include "train/slab.h"

namespace elm {

struct TrainerState {
  int64_t step = 0;     // optimizer steps completed
  LoaderPosition data;  // the training loader's next sample
  uint64_t seed = 0;    // init and shuffle seed (the shuffle order is a function of it)
  int64_t tokens_seen = 0;
  double loss = 0;          // of the last step
  std::string fingerprint;  // model shape + sequence/batch settings; checked on resume
  int world_size = 1;       // data-parallel ranks that trained it (absent in the file = 1)
};

// "step_00000100"
std::string CheckpointName(int64_t step);
// Writes a complete checkpoint folder of `slab` under `root` (replacing one of the same step),
// DONE last; `tokenizer_json` ("" for none) goes with the weights where their format carries one.
// Returns its path.
// With `moment_shards` > 0 the moments were written by WriteMomentShard into the folder
// PrepareCheckpoint made, one file per rank: SaveCheckpoint checks them and names them in
// manifest.json instead of writing optimizer.safetensors.
std::string SaveCheckpoint(const std::string& root, const TrainSlab& slab, const TrainerState& st,
                           const std::string& tokenizer_json, int moment_shards = 0);
// A fresh, empty folder for step `step` under `root` (an older one of that step removed); rank
// 0 makes it before the ranks write their shards.
std::string PrepareCheckpoint(const std::string& root, int64_t step);
// "optimizer-00001-of-00004.safetensors"
std::string MomentShardName(int rank, int world);
// This rank's moments (slab.m, slab.v: the whole tensors in its range) into `dir`, atomically.
void WriteMomentShard(const std::string& dir, const TrainSlab& slab, int rank, int world);
// Loads parameters and moments into `slab` (its training state allocated here) from a complete
// checkpoint written for the same family and layout, by any number of ranks.
TrainerState LoadCheckpoint(const std::string& dir, TrainSlab& slab);
// The moments of `dir` (optimizer.safetensors or the shards its manifest names) for the
// elements slab.m and slab.v hold (slab.moments_begin on), by tensor name.
void LoadMoments(const std::string& dir, TrainSlab& slab);
// Complete checkpoint folders under `root`, oldest first.
std::vector<std::string> ListCheckpoints(const std::string& root);
// `path` itself when it is a complete checkpoint, else the newest complete one under path or
// path/checkpoints; "" when there is none. Incomplete folders (no DONE) are skipped.
std::string FindLatestCheckpoint(const std::string& path);
// Deletes all but the newest `keep_last` complete checkpoints (0 keeps all) and any incomplete
// folder older than the newest complete one.
// Removes the step folders under `root` without DONE (a checkpoint killed while being written;
// its temp files died with it), each reported on stderr. The trainer calls it when a run starts,
// before anything else is written there. Returns how many were removed.
int RemoveIncompleteCheckpoints(const std::string& root);

void PruneCheckpoints(const std::string& root, int keep_last);

}  // namespace elm
