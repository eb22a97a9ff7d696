// elm logits --model DIR --ids 1,5,9 --output FILE: float32 [T, V] logits of one full forward.
#include <cstdio>

#include "base/mmap_file.h"
#include "cli_util.h"
#include "commands.h"
#include "model/session.h"

namespace elm::cli {

void RegisterLogitsCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "logits", "Write row-major float32 [T, V] logits of one no-cache forward over the ids");
  struct Opts {
    std::string model, ids, output, weights;
    int threads = 0;
    bool reference = false, exact = false;
  };
  auto o = std::make_shared<Opts>();
  AddModelOption(cmd, o->model)->required();
  AddThreadsOption(cmd, o->threads);
  cmd->add_option("--ids", o->ids, "Comma-separated token ids (nothing is prepended)")->required();
  cmd->add_option("--output", o->output, "Output file (raw float32, little-endian)")->required();
  cmd->add_option("--weights", o->weights, "Convert weights at load: f32, f16, bf16, q8_0, q4_0");
  cmd->add_flag("--reference", o->reference, "Use the scalar reference kernels");
  cmd->add_flag("--exact", o->exact, kExactHelp);
  cmd->callback([o] {
    const auto ids = ParseIdList(o->ids, "--ids");
    SetThreads(o->threads);
    LoadOptions lo;
    lo.weights = ParseWeightsFlag(o->weights);
    lo.exact = o->exact;
    auto model = Model::Load(o->model, lo);
    Session session(model);  // context = max_context_length; longer inputs are an error
    session.set_reference(o->reference);
    std::vector<float> logits;
    ForwardOptions fo;
    fo.all_logits = true;
    session.Forward(ids, logits, fo);
    WriteFileAtomic(o->output, logits.data(), logits.size() * sizeof(float));
    std::fprintf(stderr, "wrote [%zu, %d] logits to %s\n", ids.size(), model->config().vocab_size,
                 o->output.c_str());
  });
}

ELM_REGISTER_COMMAND(20, RegisterLogitsCommand);

}  // namespace elm::cli
