// A per-sequence restriction on which token may come next (docs/sampling.md, "Grammars and JSON
// schemas"): the decode loop (generation/generator.cc) masks the logits before the sampler runs,
// tells the constraint which token was chosen, and ends the reply once the constraint is complete.
// Grammars (grammar/grammar_constraint.h) implement it; the sampler itself knows nothing of them.
#pragma once

#include <span>

namespace elm {

class TokenConstraint {
 public:
  virtual ~TokenConstraint() = default;

  // Sets the logit of every token that may not come next to -inf. The end-of-sequence token is
  // allowed only where the constrained text may end (and always when nothing else is, so a
  // constraint can never leave the sampler without a token).
  virtual void Mask(std::span<float> logits) = 0;
  // Records the token that was sampled (one Mask allowed). Throws elm::Error if it was not.
  virtual void Accept(int id) = 0;
  // Nothing more may follow: the decode loop stops here.
  virtual bool Complete() const = 0;
};

}  // namespace elm
