// The C interface between elm and its MPI plugin (libelm_mpi.so, built from mpi_plugin.cc and
// linked against the MPI library). elm never links MPI itself: Distributed::Init() loads the
// plugin with dlopen only when the process was started by an MPI launcher, so `elm generate`
// and every other command never map libmpi (docs/architecture.md, "MPI loaded on first use").
//
// Every call that can fail returns 0 on success, or writes a message (NUL-terminated, at most
// `err_len` bytes) to `err` and returns non-zero; no C++ exception crosses the boundary.
#pragma once

#include <stddef.h>  // NOLINT(modernize-deprecated-headers): a C interface
#include <stdint.h>  // NOLINT(modernize-deprecated-headers)

extern "C" {

// Bumped whenever the table below changes; elm refuses a plugin of another version.
#define ELM_MPI_PLUGIN_VERSION 2

struct ElmMpiApi {
  int version;
  // MPI_Init_thread (FUNNELED) unless MPI is initialized already; *we_initialized = 1 when this
  // call initialized it (and Finalize is owed).
  int (*init)(int* rank, int* size, int* we_initialized, char* err, size_t err_len);
  void (*finalize)(void);
  void (*abort)(int code);
  int (*allreduce_sum_f32)(float* buf, size_t n, char* err, size_t err_len);
  int (*allreduce_sum_f64)(double* buf, size_t n, char* err, size_t err_len);
  int (*broadcast)(void* buf, size_t bytes, int root, char* err, size_t err_len);
  // *lo ← min over ranks, *hi ← max over ranks.
  int (*allreduce_min_max_u64)(uint64_t* lo, uint64_t* hi, char* err, size_t err_len);
  int (*barrier)(char* err, size_t err_len);
  // Non-blocking collectives of the sharded modes (train/shard.h), `bytes` at most INT_MAX. Each
  // starts the operation and returns its handle in *req; complete it with wait, or poll with
  // test (which also drives MPI's progress while the trainer computes).
  // MPI_Igather: rank `root` receives every rank's `bytes` at recv + rank·bytes (recv may be
  // null on the other ranks).
  int (*igather)(const void* send, void* recv, size_t bytes, int root, int* req, char* err,
                 size_t err_len);
  // MPI_Ibcast of `bytes` from `root`.
  int (*ibcast)(void* buf, size_t bytes, int root, int* req, char* err, size_t err_len);
  // MPI_Wait on a handle (which is freed); MPI_Test: *done = 1 when complete (and freed).
  int (*wait)(int req, char* err, size_t err_len);
  int (*test)(int req, int* done, char* err, size_t err_len);
};

// The plugin's one exported symbol.
const ElmMpiApi* elm_mpi_plugin(void);
typedef const ElmMpiApi* (*ElmMpiPluginFn)(void);  // NOLINT(modernize-use-using)

}  // extern "C"
