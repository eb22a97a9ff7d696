// elm gguf-info FILE: the header, every metadata entry and every tensor record of a GGUF file.
#include <cstdio>

#include "commands.h"
#include "io/gguf.h"

namespace elm::cli {

void RegisterGgufInfoCommand(CLI::App& app) {
  auto* cmd = app.add_subcommand("gguf-info", "Dump a GGUF file's metadata and tensor table");
  struct Opts {
    std::string file;
    size_t max_items = 8;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("file", o->file, "GGUF file")->required();
  cmd->add_option("--max-items", o->max_items, "Array elements to show per key (default 8)");
  cmd->callback([o] {
    const GgufFile f(o->file);
    std::printf("file:      %s\n", o->file.c_str());
    std::printf("version:   %u\nalignment: %u\ndata at:   %zu of %zu bytes\n", f.version(),
                f.alignment(), f.data_offset(), f.file_size());
    std::printf("\n%zu metadata entries:\n", f.metadata().size());
    for (const auto& [key, v] : f.metadata()) {
      const std::string type = v.type == GgufType::kArray
                                   ? std::string("array<") + GgufTypeName(v.elem) + ">"
                                   : GgufTypeName(v.type);
      std::printf("  %-44s %-14s %s\n", key.c_str(), type.c_str(),
                  v.ToString(o->max_items).c_str());
    }
    std::printf("\n%zu tensors:\n", f.tensors().size());
    std::printf("  %-34s %-6s %-24s %12s %12s\n", "name", "type", "ne (GGML order)", "offset",
                "bytes");
    for (const auto& t : f.tensors()) {
      std::string ne = "[";
      for (size_t i = 0; i < t.ne.size(); ++i) ne += (i ? ", " : "") + std::to_string(t.ne[i]);
      ne += "]";
      std::printf("  %-34s %-6s %-24s %12llu %12zu\n", t.name.c_str(), t.type_name(), ne.c_str(),
                  static_cast<unsigned long long>(t.offset), t.nbytes);
    }
  });
}

ELM_REGISTER_COMMAND(81, RegisterGgufInfoCommand);

}  // namespace elm::cli
