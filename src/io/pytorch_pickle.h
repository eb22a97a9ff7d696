// A safe reader for the pickles torch.save writes (data.pkl of a .pt archive; docs/formats.md,
// "PyTorch .pt checkpoints"). It implements the opcodes of pickle protocols 2–4 that describe
// plain data (None, bools, ints, floats, strings, bytes, lists, tuples, dicts) and builds
// values instead of calling anything: the only globals it accepts are the ones a checkpoint of
// tensors needs — torch._utils._rebuild_tensor_v2 and _rebuild_parameter (a tensor view of a
// storage), the storage classes torch.FloatStorage, HalfStorage, BFloat16Storage, DoubleStorage,
// LongStorage, IntStorage, ShortStorage, CharStorage, ByteStorage and BoolStorage (named by the
// persistent ids of storages), and collections.OrderedDict. Any other global (os.system,
// builtins.eval, a numpy type, a user class) is an error naming it: nothing in the file is ever
// executed. Values live in one arena and refer to each other by index, so memo references and
// cycles need no ownership.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace elm {

// A storage element type of PyTorch: "float", "half", "bfloat16", "double", "long", "int",
// "short", "char", "byte", "bool" (from the storage class name, e.g. torch.HalfStorage).
struct PtScalarType {
  std::string name;
  size_t size = 0;  // bytes per element
};

struct PtStorage {
  std::string key;  // the record name: <archive>/data/<key>
  PtScalarType type;
  int64_t numel = 0;
  std::string location;  // "cpu", "cuda:0", ...
};

struct PtTensor {
  size_t storage = 0;  // value index of a PtStorage value
  int64_t offset = 0;  // in elements
  std::vector<int64_t> shape, stride;
};

struct PyValue {
  enum class Kind {
    kNone,
    kBool,
    kInt,
    kFloat,
    kStr,
    kBytes,
    kList,
    kTuple,
    kDict,
    kStorage,
    kTensor,
    kGlobal,  // an allowed callable (str holds "module name"), only as an intermediate
  };
  Kind kind = Kind::kNone;
  bool b = false;
  int64_t i = 0;
  double f = 0;
  std::string str;                              // kStr, kBytes, kGlobal
  std::vector<size_t> items;                    // kList, kTuple
  std::vector<std::pair<size_t, size_t>> dict;  // kDict, in insertion order
  PtStorage storage;                            // kStorage
  PtTensor tensor;                              // kTensor
};

class Pickle {
 public:
  // Unpickles `n` bytes; `origin` names them in errors ("ckpt.pt: data.pkl").
  Pickle(const uint8_t* data, size_t n, const std::string& origin);

  const PyValue& root() const { return values_.at(root_); }
  const PyValue& at(size_t i) const { return values_.at(i); }
  size_t root_index() const { return root_; }
  size_t size() const { return values_.size(); }

  // The value under string key `key` of dict `dict`, or nullptr (also when `dict` is no dict).
  const PyValue* Get(const PyValue& dict, const std::string& key) const;
  // A short description of value i for messages: "dict of 3", "tensor [2, 3] (float)", ...
  std::string Describe(size_t i) const;

 private:
  friend class Unpickler;
  std::vector<PyValue> values_;
  size_t root_ = 0;
};

// The element type of a storage class name ("FloatStorage"), or size 0 when unknown.
PtScalarType PtScalarTypeOfStorage(const std::string& class_name);

}  // namespace elm
