#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "base/error.h"

namespace elm {

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) out += (i ? ", " : "") + std::to_string(shape[i]);
  return out + "]";
}

const TensorView& CheckWidenable(const TensorView& v, const std::string& origin,
                                 const std::string& name, const std::vector<int64_t>& shape,
                                 const std::string& note) {
  if (!v.dtype)
    Fail(origin, ": tensor '", name, "' has dtype ", v.dtype_name, "; elm reads F32, F16 and BF16");
  if (v.shape != shape)
    Fail(origin, ": tensor '", name, "' has shape ", ShapeString(v.shape),
         " but config.json implies ", ShapeString(shape), note);
  return v;
}

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr uint64_t kMaxHeaderBytes = 100ull << 20;  // the reference implementation's limit

// Multiplies shape dims with overflow checks; returns false on overflow or negative dims.
bool CheckedNumel(const std::vector<int64_t>& shape, uint64_t* out) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0) return false;
    const auto ud = static_cast<uint64_t>(d);
    if (ud != 0 && n > std::numeric_limits<uint64_t>::max() / ud) return false;
    n *= ud;
  }
  *out = n;
  return true;
}

}  // namespace

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t SafetensorsDTypeSize(const std::string& name) {
  static const std::map<std::string, size_t> kSizes = {
      {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2}, {"F16", 2}, {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4}, {"F64", 8}, {"I64", 8},     {"U64", 8}};
  auto it = kSizes.find(name);
  return it == kSizes.end() ? 0 : it->second;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  const uint8_t* base = file_.data();
  const size_t size = file_.size();
  if (size < 8) Fail(path, ": not a safetensors file (", size, " bytes, need at least 8)");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len == 0 || header_len > kMaxHeaderBytes)
    Fail(path, ": invalid safetensors header length ", header_len);
  if (header_len > size - 8)
    Fail(path, ": truncated: header claims ", header_len, " bytes but the file has ", size - 8,
         " after the length field");
  const char* hdr = reinterpret_cast<const char*>(base + 8);
  if (hdr[0] != '{') Fail(path, ": safetensors header does not start with '{'");

  // Parse while recording top-level keys, so duplicate tensor names are caught (a JSON object
  // would silently keep only one of them).
  std::set<std::string> seen;
  std::string duplicate;
  json header;
  try {
    header =
        json::parse(hdr, hdr + header_len, [&](int depth, json::parse_event_t event, json& parsed) {
          if (depth == 1 && event == json::parse_event_t::key) {
            const std::string k = parsed.get<std::string>();
            if (!seen.insert(k).second && duplicate.empty()) duplicate = k;
          }
          return true;
        });
  } catch (const json::exception& e) {
    Fail(path, ": safetensors header is not valid JSON: ", e.what());
  }
  if (!duplicate.empty()) Fail(path, ": duplicate tensor name '", duplicate, "' in header");
  if (!header.is_object()) Fail(path, ": safetensors header is not a JSON object");

  const uint8_t* data = base + 8 + header_len;
  const uint64_t data_size = size - 8 - header_len;
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::vector<std::string> range_names;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) Fail(path, ": __metadata__ must be an object of strings");
      for (auto& [k, v] : entry.items()) {
        if (!v.is_string()) Fail(path, ": __metadata__ value for '", k, "' is not a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = path + ": tensor '" + name + "'";
    if (!entry.is_object()) Fail(where, ": header entry is not an object");
    if (!entry.contains("dtype") || !entry["dtype"].is_string())
      Fail(where, ": missing or non-string 'dtype'");
    if (!entry.contains("shape") || !entry["shape"].is_array())
      Fail(where, ": missing or non-array 'shape'");
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      Fail(where, ": 'data_offsets' must be an array of two integers");
    TensorView v;
    v.name = name;
    v.dtype_name = entry["dtype"].get<std::string>();
    const size_t esize = SafetensorsDTypeSize(v.dtype_name);
    if (esize == 0) Fail(where, ": unknown dtype '", v.dtype_name, "'");
    v.dtype = ParseDType(v.dtype_name);
    for (const auto& d : entry["shape"]) {
      if (!d.is_number_integer() || d.get<int64_t>() < 0)
        Fail(where, ": shape entries must be non-negative integers");
      v.shape.push_back(d.get<int64_t>());
    }
    const auto& off = entry["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      Fail(where, ": data_offsets must be non-negative integers");
    const uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (b > e) Fail(where, ": data_offsets [", b, ", ", e, "] are reversed");
    if (e > data_size)
      Fail(where, ": data_offsets end ", e, " is past the data section (", data_size,
           " bytes): the file is truncated or corrupt");
    uint64_t numel = 0;
    if (!CheckedNumel(v.shape, &numel) || numel > std::numeric_limits<uint64_t>::max() / esize)
      Fail(where, ": shape is too large");
    if (numel * esize != e - b)
      Fail(where, ": byte size ", e - b, " does not match shape x dtype (", numel * esize, ")");
    v.data = data + b;
    v.nbytes = e - b;
    ranges.emplace_back(b, e);
    range_names.push_back(name);
    tensors_.emplace(name, std::move(v));
  }
  // Tensors must not overlap (zero-size tensors may sit anywhere).
  std::vector<size_t> order(ranges.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ranges[a] < ranges[b]; });
  uint64_t end = 0;
  std::string last;
  for (size_t i : order) {
    if (ranges[i].first == ranges[i].second) continue;
    if (ranges[i].first < end)
      Fail(path, ": tensors '", last, "' and '", range_names[i], "' overlap in the data section");
    end = ranges[i].second;
    last = range_names[i];
  }
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

void PadSafetensorsHeader(std::string& header) {
  header.resize((8 + header.size() + 63) / 64 * 64 - 8, ' ');
}

void WriteSafetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    if (!names.insert(t.name).second) Fail(path, ": duplicate tensor name '", t.name, "'");
    if (DTypeBlock(t.dtype) != 1)
      Fail(path, ": tensor '", t.name, "': safetensors cannot store ", DTypeName(t.dtype));
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    const uint64_t nbytes = numel * DTypeSize(t.dtype);
    header[t.name] = {{"dtype", DTypeName(t.dtype)},
                      {"shape", t.shape},
                      {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string h = header.dump();
  PadSafetensorsHeader(h);
  std::string buf;
  buf.reserve(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) buf.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  buf += h;
  for (const auto& t : tensors) {
    uint64_t numel = 1;
    for (int64_t d : t.shape) numel *= static_cast<uint64_t>(d);
    buf.append(static_cast<const char*>(t.data), numel * DTypeSize(t.dtype));
  }
  WriteFileAtomic(path, buf.data(), buf.size());
}

TensorStore::TensorStore(const std::string& path) : origin_(path) {
  std::vector<std::string> files;
  if (fs::is_directory(path)) {
    const fs::path dir(path);
    const fs::path index = dir / "model.safetensors.index.json";
    const fs::path single = dir / "model.safetensors";
    if (fs::exists(index)) {
      json j;
      try {
        j = json::parse(ReadTextFile(index.string()));
      } catch (const json::exception& e) {
        Fail(index.string(), ": not valid JSON: ", e.what());
      }
      if (!j.contains("weight_map") || !j["weight_map"].is_object())
        Fail(index.string(), ": missing object 'weight_map'");
      std::map<std::string, std::string> wanted;  // tensor -> shard
      std::set<std::string> shard_names;
      for (auto& [tensor, shard] : j["weight_map"].items()) {
        if (!shard.is_string())
          Fail(index.string(), ": weight_map['", tensor, "'] is not a string");
        const std::string s = shard.get<std::string>();
        if (s.find('/') != std::string::npos || s.find("..") != std::string::npos)
          Fail(index.string(), ": weight_map['", tensor, "'] names a file outside the folder: ", s);
        wanted[tensor] = s;
        shard_names.insert(s);
      }
      std::map<std::string, SafetensorsFile*> by_name;
      for (const auto& s : shard_names) {
        files_.push_back(std::make_unique<SafetensorsFile>((dir / s).string()));
        by_name[s] = files_.back().get();
      }
      for (const auto& [tensor, shard] : wanted) {
        const TensorView* v = by_name[shard]->Find(tensor);
        if (v == nullptr)
          Fail(index.string(), ": tensor '", tensor, "' is listed in shard ", shard,
               " but that file does not contain it");
        index_[tensor] = v;
      }
      return;
    }
    if (!fs::exists(single))
      Fail(path, ": no model.safetensors or model.safetensors.index.json in this folder");
    files.push_back(single.string());
  } else {
    files.push_back(path);
  }
  for (const auto& f : files) {
    files_.push_back(std::make_unique<SafetensorsFile>(f));
    for (const auto& [name, view] : files_.back()->tensors()) index_[name] = &view;
  }
}

const TensorView* TensorStore::Find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : it->second;
}

void TensorStore::Evict(const TensorView& v) const {
  for (const auto& f : files_) f->file().Evict(v.data, v.nbytes);
}

const TensorView& TensorStore::Get(const std::string& name) const {
  const TensorView* v = Find(name);
  if (v == nullptr) Fail(origin_, ": checkpoint has no tensor '", name, "'");
  return *v;
}

}  // namespace elm
