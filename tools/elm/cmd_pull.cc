// elm pull owner/name [--revision R] [--include GLOB ...]: downloads a model from the Hugging Face
// hub into the local hub cache (src/hub/hub_client.h; docs/formats.md, "Hub names and elm pull"),
// after which `--model owner/name` opens it anywhere.
#include <unistd.h>

#include <cstdio>
#include <memory>

#include "commands.h"
#include "eval/progress.h"
#include "hub/hub_client.h"

namespace elm::cli {

void RegisterPullCommands(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "pull",
      "Download a model from the Hugging Face hub into its local cache (then --model owner/name "
      "opens it)");
  struct Opts {
    PullRequest req;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("repo", o->req.repo, "Repository id, e.g. apple/OpenELM-270M-Instruct")
      ->required();
  cmd->add_option("--revision", o->req.revision, "Branch, tag or commit (default: main)");
  cmd->add_option("--include", o->req.include,
                  "Also download files matching this glob, e.g. '*.gguf' or a GGUF file's name "
                  "(repeatable)");
  cmd->add_flag("--quiet", o->quiet, "No progress bar");
  cmd->footer(
      "Environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (gated or private "
      "repositories), HF_HUB_CACHE or HF_HOME (cache folder, default "
      "~/.cache/huggingface/hub). An interrupted pull resumes where it stopped.");
  cmd->callback([o] {
    eval::ProgressBar bar(!o->quiet && ::isatty(STDERR_FILENO) == 1);
    std::string current;
    auto progress = [&](const std::string& file, int64_t done, int64_t total) {
      if (file != current) {
        current = file;
        bar.Start(file, total / 1024, "KiB/s");
      }
      bar.Update(done / 1024, done / 1024);
    };
    const PullResult r = PullModel(o->req, HubOptions{}, progress);
    bar.Finish();
    std::printf("%s: %zu files at commit %s (%.1f MiB downloaded)\n%s\n", o->req.repo.c_str(),
                r.files.size(), r.commit.c_str(),
                static_cast<double>(r.downloaded_bytes) / (1024.0 * 1024.0), r.snapshot.c_str());
    // A revision other than main is named in the model argument (owner/name@revision).
    const std::string name = o->req.repo + (o->req.revision == "main" ? "" : "@" + o->req.revision);
    std::printf("use it with: elm generate --model %s --prompt \"...\"\n", name.c_str());
  });
}

ELM_REGISTER_COMMAND(85, RegisterPullCommands);

}  // namespace elm::cli
