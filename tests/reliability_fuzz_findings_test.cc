// Regression tests for what the fuzz targets found beyond the reproduced defects D1-D10
// (docs/reliability.md, "Fuzzing"): N1 and N2.
#include <gtest/gtest.h>

#include <omp.h>

#include <fstream>
#include <string>

#include "base/error.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/text_sources.h"
#include "train/train_config.h"

namespace elm {
namespace {

std::string ErrorOf(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no elm::Error thrown";
  return "";
}

// N1: documents mode tokenizes a document's pieces in an OpenMP loop; invalid UTF-8 in a piece
// threw inside the parallel region (std::terminate). It must be an elm::Error naming the file.
TEST(ReliabilityFuzzN1, InvalidUtf8InDocumentsModeIsAnError) {
  const std::string path = test::TempDir("rel_n1") + "/doc.txt";
  std::string text;
  for (int i = 0; i < 64; ++i) text += "word" + std::to_string(i) + " ";
  text += "bad\xf8\x03 tail";
  std::ofstream(path, std::ios::binary) << text;
  SourceFile src;
  src.path = path;
  src.kind = SourceKind::kText;
  DatasetOptions opt;
  opt.seq_len = 8;
  opt.packed = false;
  opt.document_split_size = 8;
  opt.verbose = false;
  const int threads = omp_get_max_threads();
  omp_set_num_threads(2);  // the error is thrown on a worker thread too
  const std::string msg = ErrorOf([&] { BuildSamples({src}, Tokenizer::Default(), opt); });
  omp_set_num_threads(threads);
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
}

// N2: an alias inside its own anchor (`a: &b\n  c: *b`) nests forever; flattening it overflowed
// the stack. It must be an error naming the file.
TEST(ReliabilityFuzzN2, SelfReferentialYamlAliasIsAnError) {
  const std::string path = test::DataDir() + "/reliability/recursive_alias.yaml";
  const std::string msg = ErrorOf([&] { LoadTrainConfig(path); });
  EXPECT_NE(msg.find(path), std::string::npos) << msg;
  EXPECT_NE(msg.find("nest deeper"), std::string::npos) << msg;
}

}  // namespace
}  // namespace elm
