// BatchStep (model/batch_step.h) against separate Session::Forward calls: several sessions at
// different positions, decoding and prefilling in one step, on the conformance test checkpoints
// (as stored and converted to Q8_0 / Q4_0 / BF16). A step's rows go through the matrix kernels
// together, and the kernels pick their decode or prefill variant by the number of rows (from 4
// rows on: kernels/matmul_fast.cc), whose summation orders differ; so the logits agree within the
// tolerance of docs/numerics.md for tiny configs (max abs ≤ 1e-4 · max(1, max|logit|)), not bit
// for bit. A step with the same rows as a Session::Forward (one sequence) is bit-identical.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include "base/error.h"
#include "model/batch_step.h"
#include "model/model.h"
#include "model/session.h"
#include "test_util.h"

namespace elm {
namespace batch_step_test {

namespace fs = std::filesystem;

// The logits of a sequence run alone vs in a batched step.
void ExpectClose(const std::vector<float>& want, const std::vector<float>& got,
                 const std::string& what) {
  ASSERT_EQ(want.size(), got.size()) << what;
  float scale = 1, diff = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    scale = std::max(scale, std::abs(want[i]));
    diff = std::max(diff, std::abs(want[i] - got[i]));
  }
  EXPECT_LE(diff, 1e-4f * scale) << what;
}

std::vector<int> TokensFor(int seed, int n, int vocab) {
  std::vector<int> ids;
  for (int i = 0; i < n; ++i) ids.push_back((seed * 7919 + i * 104729 + 13) % vocab);
  return ids;
}

// Runs the same work through B separate sessions and through BatchStep, step by step: a prompt
// per sequence (different lengths, so positions differ), prefilled in chunks with decoding
// sequences alongside, then several decode steps. Every logit must match exactly.
void ExpectBatchedEqualsSeparate(const std::shared_ptr<const Model>& model,
                                 const std::string& what) {
  const int V = model->config().vocab_size;
  const int B = 4;
  std::vector<std::unique_ptr<Session>> alone, batched;
  for (int i = 0; i < B; ++i) {
    alone.push_back(std::make_unique<Session>(model, 64));
    batched.push_back(std::make_unique<Session>(model, 64));
  }
  // Step 1: prompts of different lengths (a mixed prefill batch).
  std::vector<std::vector<int>> prompts;
  for (int i = 0; i < B; ++i) prompts.push_back(TokensFor(i + 1, 3 + 5 * i, V));
  std::vector<std::vector<float>> want(B), got(B);
  std::vector<BatchItem> items;
  for (int i = 0; i < B; ++i) {
    alone[i]->Forward(prompts[i], want[i]);
    items.push_back({batched[i].get(), prompts[i], &got[i]});
  }
  BatchStep step(model);
  step.Forward(items);
  for (int i = 0; i < B; ++i) ExpectClose(want[i], got[i], what + " prefill " + std::to_string(i));

  // Decode steps: one token each; on step 2, sequence 0 runs a chunk instead and sequence 3
  // wants no logits (a prefill chunk that is not the last), as the server mixes them.
  for (int s = 0; s < 4; ++s) {
    std::vector<std::vector<int>> next(B);
    items.clear();
    for (int i = 0; i < B; ++i) {
      next[i] = s == 2 && i == 0 ? TokensFor(s + 11, 6, V) : TokensFor(100 * s + i, 1, V);
      const bool wants = !(s == 2 && i == 3);
      alone[i]->Forward(next[i], want[i]);
      items.push_back({batched[i].get(), next[i], wants ? &got[i] : nullptr});
    }
    step.Forward(items);
    for (int i = 0; i < B; ++i) {
      ASSERT_EQ(alone[i]->position(), batched[i]->position());
      if (items[i].logits)
        ExpectClose(want[i], got[i], what + " step " + std::to_string(s) + " " + std::to_string(i));
    }
  }
  // A subset of the sessions (streams leave): still equal.
  items.clear();
  const std::vector<int> one = TokensFor(999, 1, V);
  for (int i : {1, 3}) {
    alone[i]->Forward(one, want[i]);
    items.push_back({batched[i].get(), one, &got[i]});
  }
  step.Forward(items);
  for (int i : {1, 3}) ExpectClose(want[i], got[i], what + " subset " + std::to_string(i));

  // One sequence alone in a step: the same rows as its Session::Forward, bit for bit.
  Session fresh_alone(model, 64), fresh_batched(model, 64);
  for (const std::vector<int>& t : {TokensFor(5, 7, V), TokensFor(6, 1, V), TokensFor(7, 1, V)}) {
    fresh_alone.Forward(t, want[0]);
    items = {{&fresh_batched, t, &got[0]}};
    step.Forward(items);
    EXPECT_EQ(want[0], got[0]) << what << " alone";
  }
}

TEST(BatchStep, EqualsSeparateSessionForwardsOnConformanceModels) {
  const auto folders = test::ConformanceFolders("batch_step");
  ASSERT_FALSE(folders.empty());
  int quantized = 0;
  for (const std::string& d : folders) {
    if (!fs::exists(d + "/config.json")) continue;
    const std::string name = fs::path(d).filename().string();
    ExpectBatchedEqualsSeparate(Model::Load(d), name + " (stored)");
    for (DType t : {DType::kQ8_0, DType::kQ4_0, DType::kBF16}) {
      LoadOptions opt;
      opt.weights = t;
      std::shared_ptr<const Model> m;
      try {
        m = Model::Load(d, opt);
      } catch (const Error&) {
        continue;  // columns that do not fill whole quantization blocks
      }
      ExpectBatchedEqualsSeparate(m, name + " as " + DTypeName(t));
      if (t != DType::kBF16) ++quantized;
    }
  }
  EXPECT_GT(quantized, 0) << "no checkpoint could be quantized to Q8_0 or Q4_0";
}

// Several logit rows per item and branch items (the eval scorer's batches, docs/evaluation.md
// "Batching across documents") against Session::Forward with all_logits / branches: a branch
// item after a prefix, a plain item wanting its last 3 rows and a decoding item, in one step;
// then a branch item alone, whose rows are those of its own forward, bit for bit.
void ExpectLogitRowsAndBranchesEqualSeparate(const std::shared_ptr<const Model>& model,
                                             const std::string& what) {
  const int V = model->config().vocab_size;
  std::vector<std::unique_ptr<Session>> alone, batched;
  for (int i = 0; i < 3; ++i) {
    alone.push_back(std::make_unique<Session>(model, 64));
    batched.push_back(std::make_unique<Session>(model, 64));
  }
  std::vector<float> scratch;
  for (int i = 0; i < 3; ++i) {  // different prefixes: the items start at different positions
    const std::vector<int> prefix = TokensFor(40 + i, 4 + 3 * i, V);
    alone[i]->Forward(prefix, scratch);
    batched[i]->Forward(prefix, scratch);
  }
  const std::vector<int> branch_tokens = TokensFor(50, 9, V), plain = TokensFor(51, 6, V),
                         decode = TokensFor(52, 1, V);
  const std::vector<int> branches = {4, 2, 3};
  std::vector<std::vector<float>> want(3), got(3);
  ForwardOptions all;
  all.all_logits = true;
  ForwardOptions branched = all;
  branched.branches = branches;
  alone[0]->Forward(branch_tokens, want[0], branched);
  alone[1]->Forward(plain, want[1], all);
  want[1].erase(want[1].begin(), want[1].end() - 3 * static_cast<int64_t>(V));
  alone[2]->Forward(decode, want[2]);
  std::vector<BatchItem> items = {{batched[0].get(), branch_tokens, &got[0], 9, branches},
                                  {batched[1].get(), plain, &got[1], 3, {}},
                                  {batched[2].get(), decode, &got[2], 1, {}}};
  BatchStep step(model);
  step.Forward(items);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(alone[i]->position(), batched[i]->position()) << what << " item " << i;
    ExpectClose(want[i], got[i], what + " rows of item " + std::to_string(i));
  }
  // The cache holds the prefix and the last branch: the next token continues it alike.
  alone[0]->Forward(decode, want[0]);
  items = {{batched[0].get(), decode, &got[0]}};
  step.Forward(items);
  ExpectClose(want[0], got[0], what + " after branches");

  alone[1]->Rewind(4);
  batched[1]->Rewind(4);
  alone[1]->Forward(branch_tokens, want[1], branched);
  items = {{batched[1].get(), branch_tokens, &got[1], 9, branches}};
  step.Forward(items);
  EXPECT_EQ(want[1], got[1]) << what << " branch item alone";
}

TEST(BatchStep, LogitRowsAndBranchesEqualSessionForwards) {
  const auto folders = test::ConformanceFolders("batch_step");
  ASSERT_FALSE(folders.empty());
  for (const std::string& d : folders) {
    if (!fs::exists(d + "/config.json")) continue;
    const std::string name = fs::path(d).filename().string();
    ExpectLogitRowsAndBranchesEqualSeparate(Model::Load(d), name + " (stored)");
    LoadOptions opt;
    opt.weights = DType::kBF16;
    ExpectLogitRowsAndBranchesEqualSeparate(Model::Load(d, opt), name + " as BF16");
    opt.exact = true;  // --exact: f32 products on the widened weights
    ExpectLogitRowsAndBranchesEqualSeparate(Model::Load(d, opt), name + " as BF16, exact");
  }
}

TEST(BatchStep, BadInputIsAnErrorAndChangesNoCache) {
  const auto model = Model::Load(test::ConformanceFolders("batch_step").front());
  Session a(model, 8), b(model, 8);
  BatchStep step(model);
  std::vector<float> la, lb;
  const std::vector<int> ok = {1, 2}, bad = {1, model->config().vocab_size};
  std::vector<BatchItem> items = {{&a, ok, &la}, {&b, bad, &lb}};
  EXPECT_THROW(step.Forward(items), Error);
  EXPECT_EQ(a.position(), 0);
  const std::vector<int> long_one(9, 1);
  items = {{&a, ok, &la}, {&b, long_one, &lb}};
  EXPECT_THROW(step.Forward(items), Error);
  items = {{&a, ok, &la}, {&a, ok, &lb}};
  EXPECT_THROW(step.Forward(items), Error);
  items = {{&a, ok, &la, 3, {}}};  // more logit rows than tokens
  EXPECT_THROW(step.Forward(items), Error);
  const std::vector<int> wrong_sum = {1, 2};
  items = {{&a, ok, &la, 1, wrong_sum}};
  EXPECT_THROW(step.Forward(items), Error);
  EXPECT_EQ(a.position(), 0);
  EXPECT_EQ(b.position(), 0);
}

}  // namespace batch_step_test
}  // namespace elm
