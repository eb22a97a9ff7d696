// A TrainSlab across MPI ranks (train/distributed.h): the one broadcast and agreement check that
// full-parameter and LoRA training share (the gradient reduction is train/sharding.h's). Every call
// is collective: each rank makes it with a slab of the same layout. All are no-ops (or true) when
// the process runs alone.
#pragma once

#include "train/slab.h"

namespace elm {

// Rank 0's parameters to every rank, and its AdamW moments too when `moments` (a resumed run;
// fresh moments are zero everywhere).
void BroadcastSlab(TrainSlab& slab, bool moments);
// True on every rank when the parameters are bit-identical on all of them (an FNV-style hash of
// the slab, 8 bytes at a time, compared across ranks).
bool ParamsAgree(const TrainSlab& slab);

}  // namespace elm
