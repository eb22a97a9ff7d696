// libelm_mpi.so: the MPI calls of data-parallel training behind the C table of mpi_plugin.h.
// Built only when CMake finds MPI (option ELM_MPI); loaded by Distributed::Init() under mpirun.
#include "train/mpi_plugin.h"

#include <mpi.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <vector>

namespace {

// MPI counts are ints: large buffers go in chunks of at most this many elements (a 3B-parameter
// gradient is three calls).
constexpr size_t kChunk = size_t{1} << 30;

int Check(int rc, const char* what, char* err, size_t err_len) {
  if (rc == MPI_SUCCESS) return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  std::snprintf(err, err_len, "%s failed: %.*s", what, len, msg);
  return 1;
}

template <class T>
int AllReduceSumChunks(T* buf, size_t n, MPI_Datatype type, char* err, size_t err_len) {
  for (size_t i = 0; i < n; i += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - i));
    if (Check(MPI_Allreduce(MPI_IN_PLACE, buf + i, count, type, MPI_SUM, MPI_COMM_WORLD),
              "MPI_Allreduce", err, err_len) != 0)
      return 1;
  }
  return 0;
}

int Init(int* rank, int* size, int* we_initialized, char* err, size_t err_len) {
  int initialized = 0;
  *we_initialized = 0;
  if (Check(MPI_Initialized(&initialized), "MPI_Initialized", err, err_len) != 0) return 1;
  if (!initialized) {
    // Only the main thread calls MPI; OpenMP and OpenBLAS threads never do.
    int provided = 0;
    if (Check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread",
              err, err_len) != 0)
      return 1;
    *we_initialized = 1;
  }
  if (Check(MPI_Comm_rank(MPI_COMM_WORLD, rank), "MPI_Comm_rank", err, err_len) != 0) return 1;
  return Check(MPI_Comm_size(MPI_COMM_WORLD, size), "MPI_Comm_size", err, err_len);
}

void Finalize() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void Abort(int code) {
  MPI_Abort(MPI_COMM_WORLD, code);
}

int SumF32(float* buf, size_t n, char* err, size_t err_len) {
  return AllReduceSumChunks(buf, n, MPI_FLOAT, err, err_len);
}

int SumF64(double* buf, size_t n, char* err, size_t err_len) {
  return AllReduceSumChunks(buf, n, MPI_DOUBLE, err, err_len);
}

int Broadcast(void* buf, size_t bytes, int root, char* err, size_t err_len) {
  auto* p = static_cast<char*>(buf);
  for (size_t i = 0; i < bytes; i += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, bytes - i));
    if (Check(MPI_Bcast(p + i, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast", err, err_len) !=
        0)
      return 1;
  }
  return 0;
}

int MinMaxU64(uint64_t* lo, uint64_t* hi, char* err, size_t err_len) {
  if (Check(MPI_Allreduce(MPI_IN_PLACE, lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD),
            "MPI_Allreduce", err, err_len) != 0)
    return 1;
  return Check(MPI_Allreduce(MPI_IN_PLACE, hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD),
               "MPI_Allreduce", err, err_len);
}

int Barrier(char* err, size_t err_len) {
  return Check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", err, err_len);
}

// The requests of the non-blocking calls, by handle (an index; MPI_REQUEST_NULL marks a free slot).
// Only the main thread calls MPI (MPI_THREAD_FUNNELED), so no lock.
std::vector<MPI_Request>& Requests() {
  static std::vector<MPI_Request> requests;
  return requests;
}

int NewRequest() {
  auto& r = Requests();
  for (size_t i = 0; i < r.size(); ++i)
    if (r[i] == MPI_REQUEST_NULL) return static_cast<int>(i);
  r.push_back(MPI_REQUEST_NULL);
  return static_cast<int>(r.size() - 1);
}

int TooLarge(size_t bytes, const char* what, char* err, size_t err_len) {
  if (bytes <= static_cast<size_t>(INT_MAX)) return 0;
  std::snprintf(err, err_len, "%s of %zu bytes: more than one MPI count holds", what, bytes);
  return 1;
}

int IGather(const void* send, void* recv, size_t bytes, int root, int* req, char* err,
            size_t err_len) {
  if (TooLarge(bytes, "MPI_Igather", err, err_len) != 0) return 1;
  const int h = NewRequest();
  const int count = static_cast<int>(bytes);
  if (Check(MPI_Igather(send, count, MPI_BYTE, recv, count, MPI_BYTE, root, MPI_COMM_WORLD,
                        &Requests()[h]),
            "MPI_Igather", err, err_len) != 0)
    return 1;
  *req = h;
  return 0;
}

int IBcast(void* buf, size_t bytes, int root, int* req, char* err, size_t err_len) {
  if (TooLarge(bytes, "MPI_Ibcast", err, err_len) != 0) return 1;
  const int h = NewRequest();
  if (Check(
          MPI_Ibcast(buf, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD, &Requests()[h]),
          "MPI_Ibcast", err, err_len) != 0)
    return 1;
  *req = h;
  return 0;
}

int Wait(int req, char* err, size_t err_len) {
  if (req < 0 || static_cast<size_t>(req) >= Requests().size()) {
    std::snprintf(err, err_len, "MPI_Wait: no request %d", req);
    return 1;
  }
  return Check(MPI_Wait(&Requests()[req], MPI_STATUS_IGNORE), "MPI_Wait", err, err_len);
}

int Test(int req, int* done, char* err, size_t err_len) {
  if (req < 0 || static_cast<size_t>(req) >= Requests().size()) {
    std::snprintf(err, err_len, "MPI_Test: no request %d", req);
    return 1;
  }
  return Check(MPI_Test(&Requests()[req], done, MPI_STATUS_IGNORE), "MPI_Test", err, err_len);
}

const ElmMpiApi kApi = {ELM_MPI_PLUGIN_VERSION,
                        Init,
                        Finalize,
                        Abort,
                        SumF32,
                        SumF64,
                        Broadcast,
                        MinMaxU64,
                        Barrier,
                        IGather,
                        IBcast,
                        Wait,
                        Test};

}  // namespace

extern "C" __attribute__((visibility("default"))) const ElmMpiApi* elm_mpi_plugin(void) {
  return &kApi;
}
