// Data parallelism over MPI, behind a small interface so that the trainer never sees MPI itself.
//
// A plain `elm train` runs alone: nothing here touches MPI. Under an MPI launcher (`mpirun -np N
// elm train …`, `srun --mpi=pmix|pmi2`, recognized by DetectLauncher from the environment) Init()
// loads elm's MPI plugin (libelm_mpi.so beside elm or in <prefix>/lib/elm, mpi_plugin.h) with
// dlopen, calls MPI_Init through it, and every process becomes one rank of N; elm itself never
// links MPI. elm built without MPI (CMake option ELM_MPI off, or MPI not found) refuses N > 1 with
// an error instead of training N independent copies.
//
// The reductions are deterministic for a given world size: every rank receives the same bytes,
// so weights updated from them stay bit-identical across ranks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

namespace elm {

// What the environment says about how this process was started (docs/training.md, "Launching:
// mpirun, hostfiles, binding, Slurm"):
//   OMPI_COMM_WORLD_SIZE   Open MPI's mpirun/mpiexec
//   PMI_SIZE               MPICH and Intel MPI (Hydra), Slurm's srun --mpi=pmi2
//   PMIX_RANK              a PMIx launcher: Slurm's srun --mpi=pmix, PRRTE's prterun; the size is
//                          PMIX_SIZE when set, else Slurm's SLURM_STEP_NUM_TASKS, else unknown
//                          (MPI_Comm_size tells)
//   SLURM_STEP_NUM_TASKS   with none of the above: srun started several tasks without an MPI
//                          plugin (srun --mpi=none), which could only train copies alone
// Only srun sets SLURM_STEP_NUM_TASKS; an sbatch script (SLURM_NTASKS, SLURM_PROCID) running a
// plain `elm train` or `mpirun` is not mistaken for it.
struct LaunchEnv {
  bool mpi = false;    // an MPI launcher started this process: MPI_Init joins its job
  int size = 1;        // the world size the launcher announced (1 when unknown)
  std::string by;      // the variable that said so ("" for none)
  int srun_tasks = 0;  // srun without an MPI plugin started this many tasks (0: not that case)
};
// `getenv` looks a variable up (nullptr when unset): std::getenv, or a test's fake environment.
LaunchEnv DetectLauncher(const std::function<const char*(const char*)>& getenv);

class Distributed {
 public:
  // Joins the MPI job when the environment says the process was started by an MPI launcher;
  // otherwise (or when already initialized) does nothing. Throws elm::Error when the launcher
  // asks for several ranks and this elm was built without MPI.
  static void Init();
  // MPI_Finalize when Init() initialized MPI (a no-op otherwise).
  static void Finalize();
  // Ends every rank of the job (MPI_Abort), for an error on one rank that the others cannot see;
  // std::exit(code) when MPI is not active.
  [[noreturn]] static void Abort(int code);

  static int rank();  // 0 when alone
  static int size();  // 1 when alone
  static bool is_root() { return rank() == 0; }
  static bool compiled_with_mpi();
  // The world size the launcher announced in the environment (1 when none), before Init().
  static int LauncherSize();

  // buf[i] ← (Σ over ranks buf[i]) / size(), in place, on every rank. No-op when alone.
  static void AllReduceMean(float* buf, size_t n);
  // buf[i] ← Σ over ranks buf[i], in place, on every rank. No-op when alone.
  static void AllReduceSum(double* buf, size_t n);
  // Copies rank `root`'s bytes to every rank.
  static void Broadcast(void* buf, size_t bytes, int root = 0);
  // True on every rank when every rank passed the same value.
  static bool AllEqual(uint64_t v);
  static void Barrier();

  // Non-blocking collectives (the sharded modes, train/shard.h); each returns a handle for
  // Wait/Test, `bytes` at most INT_MAX. Alone they complete at once (handle -1).
  // Rank `root` receives every rank's `bytes` of `send` at recv + rank·bytes.
  static int IGather(const void* send, void* recv, size_t bytes, int root);
  // `bytes` of rank `root`'s buf to every rank.
  static int IBroadcast(void* buf, size_t bytes, int root);
  static void Wait(int handle);
  // True when the operation completed (its handle is then spent); drives MPI's progress.
  static bool Test(int handle);
};

// Init() for a scope; Finalize() at its end.
class DistributedScope {
 public:
  DistributedScope() { Distributed::Init(); }
  ~DistributedScope() { Distributed::Finalize(); }
  DistributedScope(const DistributedScope&) = delete;
  DistributedScope& operator=(const DistributedScope&) = delete;
};

}  // namespace elm
