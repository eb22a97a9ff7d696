#include "train/distributed.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "base/error.h"

#ifdef ELM_HAVE_MPI
#include <mpi.h>
#endif

namespace elm {

namespace {

int g_rank = 0;
int g_size = 1;

// The world size in `var`, or 0 when the variable is unset or not a positive number.
int EnvSize(const char* var) {
  const char* v = std::getenv(var);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return *end == '\0' && n > 0 && n < (1L << 30) ? static_cast<int>(n) : 0;
}

#ifdef ELM_HAVE_MPI
bool g_we_initialized = false;  // Init() called MPI_Init (and Finalize() owes MPI_Finalize)

// MPI counts are ints: large buffers go in chunks of at most this many elements (a 3B-parameter
// gradient is three calls).
constexpr size_t kChunk = size_t{1} << 30;

void Check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  Fail(what, " failed: ", std::string(msg, static_cast<size_t>(std::max(len, 0))));
}

// In-place MPI_SUM all-reduce of n elements of `type`, in chunks of kChunk.
template <typename T>
void AllReduceSumChunks(T* buf, size_t n, MPI_Datatype type) {
  for (size_t i = 0; i < n; i += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, n - i));
    Check(MPI_Allreduce(MPI_IN_PLACE, buf + i, count, type, MPI_SUM, MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
}
#endif

}  // namespace

int Distributed::LauncherSize() {
  // Open MPI's mpirun/mpiexec, then MPICH/Intel MPI (Hydra) and Slurm's PMI.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const int n = EnvSize(var); n > 0) return n;
  return 1;
}

bool Distributed::compiled_with_mpi() {
#ifdef ELM_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void Distributed::Init() {
  const bool launched = EnvSize("OMPI_COMM_WORLD_SIZE") > 0 || EnvSize("PMI_SIZE") > 0;
  if (!launched) return;  // a plain process: MPI is never initialized
#ifdef ELM_HAVE_MPI
  int initialized = 0;
  Check(MPI_Initialized(&initialized), "MPI_Initialized");
  if (!initialized) {
    // Only the main thread calls MPI; OpenMP and OpenBLAS threads never do.
    int provided = 0;
    Check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), "MPI_Init_thread");
    g_we_initialized = true;
  }
  Check(MPI_Comm_rank(MPI_COMM_WORLD, &g_rank), "MPI_Comm_rank");
  Check(MPI_Comm_size(MPI_COMM_WORLD, &g_size), "MPI_Comm_size");
#else
  const int n = LauncherSize();
  if (n > 1)
    Fail("elm was started as one of ", n,
         " MPI ranks, but this build has no MPI support (CMake option ELM_MPI=OFF, or no MPI "
         "found when it was configured); rebuild with MPI (Debian: libopenmpi-dev) or run "
         "elm train without mpirun");
#endif
}

void Distributed::Finalize() {
#ifdef ELM_HAVE_MPI
  if (!g_we_initialized) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
  g_we_initialized = false;
  g_rank = 0;
  g_size = 1;
#endif
}

void Distributed::Abort(int code) {
#ifdef ELM_HAVE_MPI
  if (g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
  Finalize();
#endif
  std::exit(code);
}

int Distributed::rank() {
  return g_rank;
}

int Distributed::size() {
  return g_size;
}

void Distributed::AllReduceMean(float* buf, size_t n) {
  if (g_size == 1) return;
#ifdef ELM_HAVE_MPI
  AllReduceSumChunks(buf, n, MPI_FLOAT);
  const float w = static_cast<float>(g_size);
  for (size_t i = 0; i < n; ++i) buf[i] /= w;
#else
  (void)buf;
  (void)n;
#endif
}

void Distributed::AllReduceSum(double* buf, size_t n) {
  if (g_size == 1) return;
#ifdef ELM_HAVE_MPI
  AllReduceSumChunks(buf, n, MPI_DOUBLE);
#else
  (void)buf;
  (void)n;
#endif
}

void Distributed::Broadcast(void* buf, size_t bytes, int root) {
  if (g_size == 1) return;
#ifdef ELM_HAVE_MPI
  auto* p = static_cast<char*>(buf);
  for (size_t i = 0; i < bytes; i += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, bytes - i));
    Check(MPI_Bcast(p + i, count, MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast");
  }
#else
  (void)buf;
  (void)bytes;
  (void)root;
#endif
}

bool Distributed::AllEqual(uint64_t v) {
  if (g_size == 1) return true;
#ifdef ELM_HAVE_MPI
  uint64_t lo = v, hi = v;
  Check(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD),
        "MPI_Allreduce");
  Check(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD),
        "MPI_Allreduce");
  return lo == hi;
#else
  (void)v;
  return true;
#endif
}

void Distributed::Barrier() {
  if (g_size == 1) return;
#ifdef ELM_HAVE_MPI
  Check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier");
#endif
}

}  // namespace elm
