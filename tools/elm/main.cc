// elm: OpenELM inference, training and evaluation in one native program.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "commands.h"
#include "unknown_option.h"
#include "version.h"

namespace {

// libgomp's idle workers spin about 300,000 times before sleeping. On an idle machine that is
// the fastest choice; when other processes keep the cores busy it makes every parallel region
// wait for descheduled spinners, and elm runs 5-20x slower (docs/performance.md). libgomp reads
// its settings once, before main(), so when other work is running right now (besides elm, at
// least half as many runnable threads as cores, by /proc/loadavg's running count, and a 1-minute
// load average that says it is not a blip) elm asks for OMP_WAIT_POLICY=passive. A user's own
// OMP_WAIT_POLICY or GOMP_SPINCOUNT is always left alone. Returns whether it changed the
// environment.
bool AvoidSpinningOnABusyMachine() {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr)
    return false;
  double load = 0;
  int running = 0, total = 0;
  FILE* f = std::fopen("/proc/loadavg", "r");
  if (f == nullptr) return false;
  const bool ok = std::fscanf(f, "%lf %*f %*f %d/%d", &load, &running, &total) == 3;
  std::fclose(f);
  const double cores = static_cast<double>(sysconf(_SC_NPROCESSORS_ONLN));
  const int others = running - 1;  // the count includes this process
  if (!ok || cores <= 0 || others < 0.5 * cores || load < 0.5 * cores) return false;
  return setenv("OMP_WAIT_POLICY", "passive", 1) == 0;
}

// `elm serve` spins briefly instead, whatever the load: between the OpenMP regions of a step its
// stream threads sample, write to their sockets and hand in the next token, so workers that spin
// for the whole default count take the cores from them, while sleeping after every region
// (passive) pays a futex wake-up per region. GOMP_SPINCOUNT=30000 (tens of microseconds) measured
// faster than passive always, and than the default count beside two CPU-bound processes; on an
// idle machine the two counts serve alike (docs/performance.md, "Serving"). A user's own setting
// is again left alone.
bool SpinBrieflyWhenServing(int argc, char** argv) {
  if (argc < 2 || std::string_view(argv[1]) != "serve") return false;
  if (std::getenv("OMP_WAIT_POLICY") != nullptr || std::getenv("GOMP_SPINCOUNT") != nullptr)
    return false;
  return setenv("GOMP_SPINCOUNT", "30000", 1) == 0;
}

// The setting takes effect in a fresh image of this program: re-execute once when it changed the
// environment (the new process finds it set and leaves it alone). (OpenBLAS's kernel choice needs
// no re-exec: it is loaded on first use, kernels/blas.h.)
void ApplyRuntimeSettings(int argc, char** argv) {
  if (SpinBrieflyWhenServing(argc, argv) || AvoidSpinningOnABusyMachine())
    execv("/proc/self/exe", argv);  // returns only on failure: keep the defaults
}

}  // namespace

int main(int argc, char** argv) {
  ApplyRuntimeSettings(argc, argv);
  CLI::App app{"elm: Apple's OpenELM language models, natively"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::function<std::string()>(elm::cli::VersionText),
                       "Print the version, commit, kernel ISA and BLAS, and exit");
  auto entries = elm::cli::CommandRegistry::entries();
  std::stable_sort(entries.begin(), entries.end(),
                   [](const auto& a, const auto& b) { return a.order < b.order; });
  for (const auto& e : entries) e.fn(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // A mistyped flag or command is named first, with the closest known name; the errors it
    // caused (a required option "missing", a value "not expected") would only mislead.
    const bool help = e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success);
    const std::string unknown = help ? "" : elm::cli::UnknownOptionMessage(app, argc, argv);
    if (unknown.empty()) return app.exit(e);
    std::fprintf(stderr, "error: %s\n", unknown.c_str());
    return static_cast<int>(CLI::ExitCodes::ExtrasError);
  } catch (const elm::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
