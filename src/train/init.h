// CoreNet's initialization of an OpenELM (GeneralGPTModel.reset_parameters, docs/openelm.md §6.7):
//   token embeddings, qkv_proj, proj_1 (and an untied lm_head)  N(0, D^-1/2)
//   out_proj, proj_2                                            N(0, D^-1/2 · (2L)^-1/2)
//   RMSNorm weights                                             1
// Normal deviates come from elm::Rng (xoshiro256**) through Box–Muller in double, one stream per
// tensor, so a seed gives the same weights on every platform and thread count.
#pragma once

#include <cstdint>

#include "train/params.h"

namespace elm {

void InitParams(ParamSet& ps, uint64_t seed);

}  // namespace elm
