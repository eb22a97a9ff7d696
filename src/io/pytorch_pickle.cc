#include "io/pytorch_pickle.h"

#include <cstring>
#include <unordered_map>

#include "base/error.h"

namespace elm {

PtScalarType PtScalarTypeOfStorage(const std::string& class_name) {
  static const std::pair<const char*, PtScalarType> kTypes[] = {
      {"FloatStorage", {"float", 4}},       {"HalfStorage", {"half", 2}},
      {"BFloat16Storage", {"bfloat16", 2}}, {"DoubleStorage", {"double", 8}},
      {"LongStorage", {"long", 8}},         {"IntStorage", {"int", 4}},
      {"ShortStorage", {"short", 2}},       {"CharStorage", {"char", 1}},
      {"ByteStorage", {"byte", 1}},         {"BoolStorage", {"bool", 1}},
  };
  for (const auto& [name, type] : kTypes)
    if (class_name == name) return type;
  return {};
}

namespace {

constexpr const char* kRebuildTensor = "torch._utils _rebuild_tensor_v2";
constexpr const char* kRebuildParameter = "torch._utils _rebuild_parameter";
constexpr const char* kRebuildParameterState = "torch._utils _rebuild_parameter_with_state";
constexpr const char* kOrderedDict = "collections OrderedDict";

bool IsAllowedGlobal(const std::string& g) {
  if (g == kRebuildTensor || g == kRebuildParameter || g == kRebuildParameterState ||
      g == kOrderedDict)
    return true;
  return g.rfind("torch ", 0) == 0 && PtScalarTypeOfStorage(g.substr(6)).size != 0;
}

}  // namespace

class Unpickler {
 public:
  Unpickler(Pickle& out, const uint8_t* d, size_t n, const std::string& origin)
      : out_(out), d_(d), n_(n), origin_(origin) {}

  void Run() {
    for (;;) {
      if (pos_ >= n_) Bad("ends before its STOP opcode (truncated?)");
      const size_t op_at = pos_;
      const uint8_t op = d_[pos_++];
      switch (op) {
        case 0x80:  // PROTO
          if (Byte() > 5) Bad("uses an unknown pickle protocol");
          break;
        case 0x95:  // FRAME
          Take(8);
          break;
        case '.': {  // STOP
          if (stack_.size() != 1 || !marks_.empty()) Bad("stops with ", stack_.size(), " values");
          out_.root_ = stack_.back();
          return;
        }
        case '(':  // MARK
          marks_.push_back(stack_.size());
          break;
        case '0':  // POP
          Pop();
          break;
        case '1':  // POP_MARK
          PopMark();
          break;
        case '2':  // DUP
          stack_.push_back(Top());
          break;
        case 'N':
          Push(PyValue{});
          break;
        case 0x88:
        case 0x89: {  // NEWTRUE, NEWFALSE
          PyValue v;
          v.kind = PyValue::Kind::kBool;
          v.b = op == 0x88;
          Push(std::move(v));
          break;
        }
        case 'J':
          PushInt(static_cast<int32_t>(static_cast<uint32_t>(Uint(4))));
          break;
        case 'K':
          PushInt(static_cast<int64_t>(Uint(1)));
          break;
        case 'M':
          PushInt(static_cast<int64_t>(Uint(2)));
          break;
        case 0x8a:    // LONG1
        case 0x8b: {  // LONG4
          const uint64_t len = Uint(op == 0x8a ? 1 : 4);
          if (len > 8) Bad("holds an integer wider than 64 bits (at byte ", op_at, ")");
          const uint8_t* p = Take(len);
          uint64_t u = 0;
          for (uint64_t k = len; k-- > 0;) u = u << 8 | p[k];
          if (len > 0 && len < 8 && (p[len - 1] & 0x80)) u |= ~uint64_t{0} << (8 * len);
          PushInt(static_cast<int64_t>(u));
          break;
        }
        case 'G': {  // BINFLOAT, big-endian
          const uint8_t* p = Take(8);
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = u << 8 | p[k];
          PyValue v;
          v.kind = PyValue::Kind::kFloat;
          std::memcpy(&v.f, &u, 8);
          Push(std::move(v));
          break;
        }
        case 'X':     // BINUNICODE
        case 0x8c:    // SHORT_BINUNICODE
        case 0x8d:    // BINUNICODE8
        case 'T':     // BINSTRING
        case 'U':     // SHORT_BINSTRING
        case 'B':     // BINBYTES
        case 'C':     // SHORT_BINBYTES
        case 0x8e: {  // BINBYTES8
          const int w = (op == 0x8c || op == 'U' || op == 'C') ? 1
                        : (op == 0x8d || op == 0x8e)           ? 8
                                                               : 4;
          const uint64_t len = Uint(w);
          const uint8_t* p = Take(len);
          PyValue v;
          v.kind =
              (op == 'B' || op == 'C' || op == 0x8e) ? PyValue::Kind::kBytes : PyValue::Kind::kStr;
          v.str.assign(reinterpret_cast<const char*>(p), len);
          Push(std::move(v));
          break;
        }
        case '}':
          Push(Container(PyValue::Kind::kDict));
          break;
        case ']':
          Push(Container(PyValue::Kind::kList));
          break;
        case ')':
          Push(Container(PyValue::Kind::kTuple));
          break;
        case 0x85:
        case 0x86:
        case 0x87: {  // TUPLE1..3
          const size_t k = op - 0x84u;
          if (stack_.size() - Floor() < k) Bad("builds a tuple from an empty stack");
          PyValue v = Container(PyValue::Kind::kTuple);
          v.items.assign(stack_.end() - static_cast<std::ptrdiff_t>(k), stack_.end());
          stack_.resize(stack_.size() - k);
          Push(std::move(v));
          break;
        }
        case 't':    // TUPLE
        case 'l': {  // LIST
          PyValue v = Container(op == 't' ? PyValue::Kind::kTuple : PyValue::Kind::kList);
          v.items = PopMark();
          Push(std::move(v));
          break;
        }
        case 'd': {  // DICT
          PyValue v = Container(PyValue::Kind::kDict);
          const std::vector<size_t> kv = PopMark();
          if (kv.size() % 2) Bad("builds a dict from an odd number of items");
          for (size_t k = 0; k < kv.size(); k += 2) v.dict.emplace_back(kv[k], kv[k + 1]);
          Push(std::move(v));
          break;
        }
        case 'a': {  // APPEND
          const size_t x = Pop();
          Mutable(Top(), PyValue::Kind::kList, "APPEND").items.push_back(x);
          break;
        }
        case 'e': {  // APPENDS
          const std::vector<size_t> xs = PopMark();
          auto& items = Mutable(Top(), PyValue::Kind::kList, "APPENDS").items;
          items.insert(items.end(), xs.begin(), xs.end());
          break;
        }
        case 's': {  // SETITEM
          const size_t v = Pop(), k = Pop();
          Mutable(Top(), PyValue::Kind::kDict, "SETITEM").dict.emplace_back(k, v);
          break;
        }
        case 'u': {  // SETITEMS
          const std::vector<size_t> kv = PopMark();
          if (kv.size() % 2) Bad("sets an odd number of dict items");
          auto& dict = Mutable(Top(), PyValue::Kind::kDict, "SETITEMS").dict;
          for (size_t k = 0; k < kv.size(); k += 2) dict.emplace_back(kv[k], kv[k + 1]);
          break;
        }
        case 'q':
          Memo(Uint(1));
          break;
        case 'r':
          Memo(Uint(4));
          break;
        case 0x94:  // MEMOIZE
          Memo(memo_.size());
          break;
        case 'h':
        case 'j': {  // BINGET, LONG_BINGET
          const uint64_t k = Uint(op == 'h' ? 1 : 4);
          auto it = memo_.find(k);
          if (it == memo_.end()) Bad("refers to memo entry ", k, ", which was never stored");
          stack_.push_back(it->second);
          break;
        }
        case 'c': {  // GLOBAL "module\nname\n"
          const std::string module = Line(), name = Line();
          PushGlobal(module + " " + name);
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const size_t name = Pop(), module = Pop();
          if (At(name).kind != PyValue::Kind::kStr || At(module).kind != PyValue::Kind::kStr)
            Bad("names a global with something other than strings");
          PushGlobal(At(module).str + " " + At(name).str);
          break;
        }
        case 'R': {  // REDUCE
          const size_t args = Pop(), fn = Pop();
          Push(Reduce(fn, args));
          break;
        }
        case 'b': {  // BUILD: attributes of an OrderedDict (state_dict's _metadata) are dropped
          Pop();
          const PyValue::Kind k = At(Top()).kind;
          if (k != PyValue::Kind::kDict && k != PyValue::Kind::kTensor)
            Bad("sets the state of a ", Name(k), " (BUILD), which elm does not support");
          break;
        }
        case 'Q': {  // BINPERSID
          const size_t pid = Pop();
          Push(Storage(pid));
          break;
        }
        default:
          Bad("uses pickle opcode 0x", Hex(op), " at byte ", op_at,
              ", which a checkpoint of tensors never needs (elm reads plain data and tensors "
              "only)");
      }
    }
  }

 private:
  template <typename... A>
  [[noreturn]] void Bad(const A&... a) const {
    Fail(origin_, ": ", a...);
  }
  static std::string Hex(uint8_t b) {
    const char* h = "0123456789abcdef";
    return {h[b >> 4], h[b & 15]};
  }
  static const char* Name(PyValue::Kind k) {
    switch (k) {
      case PyValue::Kind::kNone:
        return "None";
      case PyValue::Kind::kBool:
        return "bool";
      case PyValue::Kind::kInt:
        return "int";
      case PyValue::Kind::kFloat:
        return "float";
      case PyValue::Kind::kStr:
        return "str";
      case PyValue::Kind::kBytes:
        return "bytes";
      case PyValue::Kind::kList:
        return "list";
      case PyValue::Kind::kTuple:
        return "tuple";
      case PyValue::Kind::kDict:
        return "dict";
      case PyValue::Kind::kStorage:
        return "storage";
      case PyValue::Kind::kTensor:
        return "tensor";
      case PyValue::Kind::kGlobal:
        return "global";
    }
    return "?";
  }

  uint8_t Byte() { return *Take(1); }
  const uint8_t* Take(uint64_t len) {
    if (len > n_ - pos_) Bad("ends inside an opcode's argument (truncated?)");
    const uint8_t* p = d_ + pos_;
    pos_ += len;
    return p;
  }
  uint64_t Uint(int w) {
    const uint8_t* p = Take(static_cast<uint64_t>(w));
    uint64_t v = 0;
    for (int k = w - 1; k >= 0; --k) v = v << 8 | p[k];
    return v;
  }
  std::string Line() {
    const size_t start = pos_;
    while (pos_ < n_ && d_[pos_] != '\n') ++pos_;
    if (pos_ >= n_) Bad("ends inside a GLOBAL name (truncated?)");
    return std::string(reinterpret_cast<const char*>(d_ + start), pos_++ - start);
  }

  const PyValue& At(size_t i) const { return out_.values_[i]; }
  size_t Floor() const { return marks_.empty() ? 0 : marks_.back(); }
  void Push(PyValue v) {
    out_.values_.push_back(std::move(v));
    stack_.push_back(out_.values_.size() - 1);
  }
  void PushInt(int64_t x) {
    PyValue v;
    v.kind = PyValue::Kind::kInt;
    v.i = x;
    Push(std::move(v));
  }
  static PyValue Container(PyValue::Kind k) {
    PyValue v;
    v.kind = k;
    return v;
  }
  size_t Top() const {
    if (stack_.size() <= Floor()) Bad("reads an empty stack");
    return stack_.back();
  }
  size_t Pop() {
    const size_t v = Top();
    stack_.pop_back();
    return v;
  }
  std::vector<size_t> PopMark() {
    if (marks_.empty()) Bad("pops to a MARK that was never set");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<size_t> xs(stack_.begin() + static_cast<std::ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return xs;
  }
  PyValue& Mutable(size_t i, PyValue::Kind k, const char* op) {
    if (out_.values_[i].kind != k)
      Bad(op, " applies to a ", Name(out_.values_[i].kind), ", not a ", Name(k));
    return out_.values_[i];
  }
  void Memo(uint64_t k) { memo_[k] = Top(); }

  void PushGlobal(const std::string& g) {
    if (!IsAllowedGlobal(g)) {
      std::string dotted = g;
      dotted[dotted.find(' ')] = '.';
      Bad("the pickle calls the global '", dotted,
          "', which elm does not allow (a checkpoint of tensors needs only torch's tensor and "
          "storage rebuilders and collections.OrderedDict; elm never runs code from a pickle)");
    }
    PyValue v;
    v.kind = PyValue::Kind::kGlobal;
    v.str = g;
    Push(std::move(v));
  }

  const PyValue& Arg(const PyValue& args, size_t k) const { return At(args.items[k]); }
  int64_t IntArg(const PyValue& v, const char* what) const {
    if (v.kind == PyValue::Kind::kBool) return v.b ? 1 : 0;
    if (v.kind != PyValue::Kind::kInt) Bad(what, " is a ", Name(v.kind), ", not an int");
    return v.i;
  }
  std::vector<int64_t> Ints(const PyValue& v, const char* what) const {
    if (v.kind != PyValue::Kind::kTuple && v.kind != PyValue::Kind::kList)
      Bad(what, " is a ", Name(v.kind), ", not a tuple");
    std::vector<int64_t> xs;
    for (size_t k : v.items) xs.push_back(IntArg(At(k), what));
    return xs;
  }

  PyValue Reduce(size_t fn_index, size_t args_index) {
    const PyValue& fn = At(fn_index);
    const PyValue& args = At(args_index);
    if (fn.kind != PyValue::Kind::kGlobal)
      Bad("calls a ", Name(fn.kind), " (REDUCE), which is not one of the allowed globals");
    if (args.kind != PyValue::Kind::kTuple)
      Bad("calls '", fn.str, "' with a ", Name(args.kind), " of arguments");
    if (fn.str == kOrderedDict) {
      if (!args.items.empty()) Bad("builds an OrderedDict from arguments");
      return Container(PyValue::Kind::kDict);
    }
    if (fn.str == kRebuildParameter || fn.str == kRebuildParameterState) {
      if (args.items.empty() || Arg(args, 0).kind != PyValue::Kind::kTensor)
        Bad("rebuilds a parameter from something other than a tensor");
      return At(args.items[0]);
    }
    if (fn.str == kRebuildTensor) {
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      if (args.items.size() < 4)
        Bad("calls _rebuild_tensor_v2 with ", args.items.size(), " arguments");
      if (Arg(args, 0).kind != PyValue::Kind::kStorage)
        Bad("rebuilds a tensor from a ", Name(Arg(args, 0).kind), ", not a storage");
      PyValue v;
      v.kind = PyValue::Kind::kTensor;
      v.tensor.storage = args.items[0];
      v.tensor.offset = IntArg(Arg(args, 1), "a tensor's storage offset");
      v.tensor.shape = Ints(Arg(args, 2), "a tensor's size");
      v.tensor.stride = Ints(Arg(args, 3), "a tensor's stride");
      if (v.tensor.shape.size() != v.tensor.stride.size())
        Bad("rebuilds a tensor with ", v.tensor.shape.size(), " sizes but ", v.tensor.stride.size(),
            " strides");
      return v;
    }
    Bad("calls the global '", fn.str, "' as a function, which elm does not allow");
  }

  PyValue Storage(size_t pid_index) {
    // ('storage', torch.<T>Storage, key, location, numel)
    const PyValue& pid = At(pid_index);
    if (pid.kind != PyValue::Kind::kTuple || pid.items.size() < 5 ||
        Arg(pid, 0).kind != PyValue::Kind::kStr || Arg(pid, 0).str != "storage")
      Bad("has a persistent id that is not a ('storage', type, key, location, size) tuple");
    const PyValue& type = Arg(pid, 1);
    if (type.kind != PyValue::Kind::kGlobal || type.str.rfind("torch ", 0) != 0 ||
        PtScalarTypeOfStorage(type.str.substr(6)).size == 0)
      Bad("has a storage whose type is not a torch storage class");
    if (Arg(pid, 2).kind != PyValue::Kind::kStr || Arg(pid, 3).kind != PyValue::Kind::kStr)
      Bad("has a storage whose key or location is not a string");
    PyValue v;
    v.kind = PyValue::Kind::kStorage;
    v.storage.type = PtScalarTypeOfStorage(type.str.substr(6));
    v.storage.key = Arg(pid, 2).str;
    v.storage.location = Arg(pid, 3).str;
    v.storage.numel = IntArg(Arg(pid, 4), "a storage's size");
    if (v.storage.numel < 0) Bad("storage '", v.storage.key, "' has a negative size");
    return v;
  }

  Pickle& out_;
  const uint8_t* d_;
  size_t n_;
  const std::string& origin_;
  size_t pos_ = 0;
  std::vector<size_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, size_t> memo_;
};

Pickle::Pickle(const uint8_t* data, size_t n, const std::string& origin) {
  Unpickler(*this, data, n, origin).Run();
}

const PyValue* Pickle::Get(const PyValue& dict, const std::string& key) const {
  if (dict.kind != PyValue::Kind::kDict) return nullptr;
  for (auto it = dict.dict.rbegin(); it != dict.dict.rend(); ++it) {
    const PyValue& k = values_[it->first];
    if (k.kind == PyValue::Kind::kStr && k.str == key) return &values_[it->second];
  }
  return nullptr;
}

std::string Pickle::Describe(size_t i) const {
  const PyValue& v = values_.at(i);
  switch (v.kind) {
    case PyValue::Kind::kNone:
      return "None";
    case PyValue::Kind::kBool:
      return v.b ? "True" : "False";
    case PyValue::Kind::kInt:
      return std::to_string(v.i);
    case PyValue::Kind::kFloat:
      return std::to_string(v.f);
    case PyValue::Kind::kStr:
      return "'" + v.str + "'";
    case PyValue::Kind::kBytes:
      return "bytes of " + std::to_string(v.str.size());
    case PyValue::Kind::kList:
      return "list of " + std::to_string(v.items.size());
    case PyValue::Kind::kTuple:
      return "tuple of " + std::to_string(v.items.size());
    case PyValue::Kind::kDict:
      return "dict of " + std::to_string(v.dict.size());
    case PyValue::Kind::kStorage:
      return "storage '" + v.storage.key + "'";
    case PyValue::Kind::kTensor: {
      std::string s = "tensor [";
      for (size_t k = 0; k < v.tensor.shape.size(); ++k)
        s += (k ? ", " : "") + std::to_string(v.tensor.shape[k]);
      return s + "] (" + values_.at(v.tensor.storage).storage.type.name + ")";
    }
    case PyValue::Kind::kGlobal:
      return "global " + v.str;
  }
  return "?";
}

}  // namespace elm
