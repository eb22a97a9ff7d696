#include "train/distributed.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "base/data_dir.h"
#include "base/error.h"
#include "train/mpi_plugin.h"

namespace elm {

namespace {

int g_rank = 0;
int g_size = 1;
bool g_we_initialized = false;     // Init() called MPI_Init (and Finalize() owes MPI_Finalize)
const ElmMpiApi* g_api = nullptr;  // the MPI plugin, loaded by Init() under a launcher

// The non-negative number in `v`, or -1 when it is unset or not a number.
int EnvCount(const char* v) {
  if (v == nullptr || *v == '\0') return -1;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return *end == '\0' && n >= 0 && n < (1L << 30) ? static_cast<int>(n) : -1;
}

LaunchEnv ProcessLaunchEnv() {
  return DetectLauncher([](const char* var) -> const char* { return std::getenv(var); });
}

constexpr const char* kPluginName = "libelm_mpi.so";

// Where the MPI plugin may be: $ELM_MPI_PLUGIN, beside the executable (a build tree), then
// <prefix>/lib/elm (an installed elm).
std::vector<std::string> PluginCandidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("ELM_MPI_PLUGIN"); env != nullptr && *env != '\0') {
    out.emplace_back(env);
    return out;
  }
  const std::string exe = ExecutableDir();
  if (!exe.empty()) {
    const std::filesystem::path dir(exe);
    out.push_back((dir / kPluginName).string());
    out.push_back((dir.parent_path() / "lib" / "elm" / kPluginName).string());
  }
  return out;
}

// Loads the MPI plugin (and with it the MPI library) once; throws when none can be loaded.
const ElmMpiApi* LoadPlugin() {
  std::string tried;
  for (const std::string& path : PluginCandidates()) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) {
      tried += (tried.empty() ? "" : ", ") + path;
      continue;
    }
    // RTLD_GLOBAL: Open MPI's own components, loaded later by libmpi, resolve symbols of libmpi.
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (lib == nullptr) Fail("cannot load elm's MPI plugin ", path, ": ", dlerror());
    auto fn = reinterpret_cast<ElmMpiPluginFn>(dlsym(lib, "elm_mpi_plugin"));
    const ElmMpiApi* api = fn != nullptr ? fn() : nullptr;
    if (api == nullptr || api->version != ELM_MPI_PLUGIN_VERSION)
      Fail(path, ": not an MPI plugin of this elm (version ", api != nullptr ? api->version : -1,
           ", expected ", ELM_MPI_PLUGIN_VERSION, ")");
    return api;
  }
  Fail("elm was started by an MPI launcher, but its MPI plugin (", kPluginName,
       ") was not found (looked for ", tried,
       "); build elm with MPI (Debian: libopenmpi-dev) and keep the plugin beside elm, or set "
       "ELM_MPI_PLUGIN");
}

constexpr size_t kErrLen = 512;

// Throws the plugin's message when `rc` is non-zero.
void Check(int rc, const char* err) {
  if (rc != 0) Fail("MPI: ", err);
}

}  // namespace

LaunchEnv DetectLauncher(const std::function<const char*(const char*)>& getenv) {
  LaunchEnv e;
  // Open MPI's mpirun/mpiexec, then MPICH/Intel MPI (Hydra) and Slurm's PMI-2.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"})
    if (const int n = EnvCount(getenv(var)); n > 0) {
      e.mpi = true;
      e.size = n;
      e.by = var;
      return e;
    }
  const int srun_tasks = EnvCount(getenv("SLURM_STEP_NUM_TASKS"));
  // PMIx (srun --mpi=pmix): a rank, and the size from PMIx or Slurm when they say it.
  if (EnvCount(getenv("PMIX_RANK")) >= 0) {
    e.mpi = true;
    e.by = "PMIX_RANK";
    if (const int n = EnvCount(getenv("PMIX_SIZE")); n > 0) {
      e.size = n;
    } else if (srun_tasks > 0) {
      e.size = srun_tasks;
    }
    return e;
  }
  if (srun_tasks > 1) {
    e.srun_tasks = srun_tasks;
    e.by = "SLURM_STEP_NUM_TASKS";
  }
  return e;
}

int Distributed::LauncherSize() {
  return ProcessLaunchEnv().size;
}

bool Distributed::compiled_with_mpi() {
#ifdef ELM_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void Distributed::Init() {
  const LaunchEnv launch = ProcessLaunchEnv();
  if (launch.srun_tasks > 1)
    Fail("elm was started by srun as one of ", launch.srun_tasks,
         " tasks (SLURM_STEP_NUM_TASKS) without an MPI plugin, so each task would train alone; ",
         "launch with srun --mpi=pmix (or --mpi=pmi2), or with mpirun inside the allocation ",
         "(docs/training.md, \"Launching: mpirun, hostfiles, binding, Slurm\")");
  if (!launch.mpi) return;  // a plain process: MPI is never loaded or initialized
  if (!compiled_with_mpi()) {
    const int n = launch.size;
    if (n > 1)
      Fail("elm was started as one of ", n,
           " MPI ranks, but this build has no MPI support (CMake option ELM_MPI=OFF, or no MPI "
           "found when it was configured); rebuild with MPI (Debian: libopenmpi-dev) or run "
           "elm train without mpirun");
    return;
  }
  if (g_api == nullptr) g_api = LoadPlugin();
  char err[kErrLen] = "";
  int we = 0;
  Check(g_api->init(&g_rank, &g_size, &we, err, sizeof err), err);
  if (we != 0) g_we_initialized = true;
}

void Distributed::Finalize() {
  if (!g_we_initialized) return;
  g_api->finalize();
  g_we_initialized = false;
  g_rank = 0;
  g_size = 1;
}

void Distributed::Abort(int code) {
  if (g_api != nullptr && g_size > 1) g_api->abort(code);
  Finalize();
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
  char err[kErrLen] = "";
  Check(g_api->allreduce_sum_f32(buf, n, err, sizeof err), err);
  const float w = static_cast<float>(g_size);
  for (size_t i = 0; i < n; ++i) buf[i] /= w;
}

void Distributed::AllReduceSum(double* buf, size_t n) {
  if (g_size == 1) return;
  char err[kErrLen] = "";
  Check(g_api->allreduce_sum_f64(buf, n, err, sizeof err), err);
}

void Distributed::Broadcast(void* buf, size_t bytes, int root) {
  if (g_size == 1) return;
  char err[kErrLen] = "";
  Check(g_api->broadcast(buf, bytes, root, err, sizeof err), err);
}

bool Distributed::AllEqual(uint64_t v) {
  if (g_size == 1) return true;
  uint64_t lo = v, hi = v;
  char err[kErrLen] = "";
  Check(g_api->allreduce_min_max_u64(&lo, &hi, err, sizeof err), err);
  return lo == hi;
}

void Distributed::Barrier() {
  if (g_size == 1) return;
  char err[kErrLen] = "";
  Check(g_api->barrier(err, sizeof err), err);
}

int Distributed::IGather(const void* send, void* recv, size_t bytes, int root) {
  if (g_size == 1) {
    if (bytes > 0 && recv != send) std::memcpy(recv, send, bytes);
    return -1;
  }
  char err[kErrLen] = "";
  int req = -1;
  Check(g_api->igather(send, recv, bytes, root, &req, err, sizeof err), err);
  return req;
}

int Distributed::IBroadcast(void* buf, size_t bytes, int root) {
  if (g_size == 1) return -1;
  char err[kErrLen] = "";
  int req = -1;
  Check(g_api->ibcast(buf, bytes, root, &req, err, sizeof err), err);
  return req;
}

void Distributed::Wait(int handle) {
  if (handle < 0) return;
  char err[kErrLen] = "";
  Check(g_api->wait(handle, err, sizeof err), err);
}

bool Distributed::Test(int handle) {
  if (handle < 0) return true;
  char err[kErrLen] = "";
  int done = 0;
  Check(g_api->test(handle, &done, err, sizeof err), err);
  return done != 0;
}

}  // namespace elm
