// .npy reader and writer; see npy.hpp for the format summary.
#include "npy.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <string_view>
#include <utility>

#include "gradcomp/dtype.hpp"

namespace gradcomp::npy {
namespace {

constexpr char kMagic[] = "\x93NUMPY";  // 6 bytes (plus the terminating NUL)
constexpr std::size_t kMagicLen = 6;
constexpr std::size_t kAlign = 64;
constexpr int kMaxDepth = 32;                 // nesting limit of the header literal
constexpr std::size_t kMaxHeaderQuote = 200;  // header text quoted in error messages

// ---- a parser for the Python literal subset .npy headers use ------------------------------

struct PyValue {
  enum class Kind { kStr, kBool, kNone, kInt, kTuple, kList, kDict };
  Kind kind = Kind::kNone;
  std::string str;        // kStr; also the source text of every value (for messages)
  bool boolean = false;   // kBool
  bool negative = false;  // kInt
  std::uint64_t magnitude = 0;
  bool overflow = false;          // kInt whose magnitude does not fit 64 bits
  std::vector<PyValue> items;     // kTuple, kList; kDict values
  std::vector<std::string> keys;  // kDict keys (string keys only)
  std::string text;               // source text
};

class LiteralParser {
 public:
  explicit LiteralParser(std::string_view s) : s_(s) {}

  Status parse_all(PyValue* out) {
    GRADCOMP_TRY(value(out, 0));
    skip_ws();
    if (pos_ != s_.size()) return error("unexpected text after the dict");
    return Status::success();
  }

 private:
  Status error(const std::string& what) const {
    std::string quoted(s_.substr(0, std::min(s_.size(), kMaxHeaderQuote)));
    if (s_.size() > kMaxHeaderQuote) quoted += "...";
    return make_status(StatusCode::kInvalidArgument, "unparsable header dict: ", what,
                       " at character ", pos_, " of \"", quoted, "\"");
  }

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool starts_with(std::string_view w) const { return s_.substr(pos_, w.size()) == w; }

  static bool is_ident_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  }

  bool keyword(std::string_view w) {
    if (!starts_with(w)) return false;
    if (pos_ + w.size() < s_.size() && is_ident_char(s_[pos_ + w.size()])) return false;
    pos_ += w.size();
    return true;
  }

  Status value(PyValue* out, int depth) {
    if (depth > kMaxDepth) return error("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) return error("unexpected end of header");
    const std::size_t start = pos_;
    const char c = s_[pos_];
    Status st;
    if (c == '\'' || c == '"') {
      st = string(out);
    } else if (c == '{') {
      st = dict(out, depth);
    } else if (c == '(' || c == '[') {
      st = sequence(out, depth);
    } else if (c == '-' || c == '+' || (c >= '0' && c <= '9')) {
      st = integer(out);
    } else if (keyword("True")) {
      out->kind = PyValue::Kind::kBool;
      out->boolean = true;
    } else if (keyword("False")) {
      out->kind = PyValue::Kind::kBool;
      out->boolean = false;
    } else if (keyword("None")) {
      out->kind = PyValue::Kind::kNone;
    } else {
      return error(std::string("unexpected character '") + c + "'");
    }
    if (!st.ok()) return st;
    out->text = std::string(s_.substr(start, pos_ - start));
    return Status::success();
  }

  Status string(PyValue* out) {
    const char quote = s_[pos_++];
    out->kind = PyValue::Kind::kStr;
    while (pos_ < s_.size() && s_[pos_] != quote) {
      if (s_[pos_] == '\\') {
        ++pos_;
        if (pos_ >= s_.size()) break;
      }
      if (s_[pos_] == '\n') return error("newline inside a string");
      out->str += s_[pos_++];
    }
    if (pos_ >= s_.size()) return error("unterminated string");
    ++pos_;
    return Status::success();
  }

  Status integer(PyValue* out) {
    out->kind = PyValue::Kind::kInt;
    if (s_[pos_] == '-' || s_[pos_] == '+') {
      out->negative = s_[pos_] == '-';
      ++pos_;
      skip_ws();
    }
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') return error("expected a digit");
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const std::uint64_t d = static_cast<std::uint64_t>(s_[pos_] - '0');
      if (out->magnitude > (std::numeric_limits<std::uint64_t>::max() - d) / 10) {
        out->overflow = true;
      } else {
        out->magnitude = out->magnitude * 10 + d;
      }
      ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == 'L' || s_[pos_] == 'l')) ++pos_;  // Python 2 long
    if (pos_ < s_.size() && (is_ident_char(s_[pos_]) || s_[pos_] == '.')) {
      return error("expected an integer");
    }
    return Status::success();
  }

  Status sequence(PyValue* out, int depth) {
    const char open = s_[pos_++];
    const char close = open == '(' ? ')' : ']';
    out->kind = open == '(' ? PyValue::Kind::kTuple : PyValue::Kind::kList;
    bool had_comma = false;
    for (;;) {
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == close) {
        ++pos_;
        break;
      }
      PyValue item;
      GRADCOMP_TRY(value(&item, depth + 1));
      out->items.push_back(std::move(item));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        had_comma = true;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == close) {
        ++pos_;
        break;
      }
      return error(std::string("expected ',' or '") + close + "'");
    }
    // "(3)" is the integer 3 in Python, not a tuple.
    if (out->kind == PyValue::Kind::kTuple && out->items.size() == 1 && !had_comma) {
      PyValue inner = std::move(out->items[0]);
      *out = std::move(inner);
    }
    return Status::success();
  }

  Status dict(PyValue* out, int depth) {
    ++pos_;
    out->kind = PyValue::Kind::kDict;
    for (;;) {
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        break;
      }
      PyValue key;
      GRADCOMP_TRY(value(&key, depth + 1));
      if (key.kind != PyValue::Kind::kStr) return error("dict key is not a string");
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') return error("expected ':' after a dict key");
      ++pos_;
      PyValue v;
      GRADCOMP_TRY(value(&v, depth + 1));
      for (const auto& k : out->keys) {
        if (k == key.str) return error("repeated key '" + k + "'");
      }
      out->keys.push_back(key.str);
      out->items.push_back(std::move(v));
      skip_ws();
      if (pos_ < s_.size() && s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < s_.size() && s_[pos_] == '}') {
        ++pos_;
        break;
      }
      return error("expected ',' or '}'");
    }
    return Status::success();
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// A readable name for a NumPy type string such as '<f8' or '|u1'.
std::string describe_descr(const std::string& descr) {
  if (descr.size() < 2) return "'" + descr + "'";
  std::size_t i = 0;
  std::string order;
  if (descr[0] == '<' || descr[0] == '>' || descr[0] == '|' || descr[0] == '=') {
    order = descr[0] == '>' ? "big-endian " : "";
    i = 1;
  }
  if (i >= descr.size()) return "'" + descr + "'";
  const char kind = descr[i];
  const std::string digits = descr.substr(i + 1);
  bool numeric = !digits.empty();
  for (char c : digits) numeric &= c >= '0' && c <= '9';
  std::string base;
  if (numeric) {
    unsigned long bytes = 0;
    for (char c : digits.substr(0, 6)) bytes = bytes * 10 + static_cast<unsigned long>(c - '0');
    const std::string bits = std::to_string(bytes * 8);
    switch (kind) {
      case 'f': base = "float" + bits; break;
      case 'i': base = "int" + bits; break;
      case 'u': base = "uint" + bits; break;
      case 'c': base = "complex" + bits; break;
      case 'b': base = "bool"; break;
      case 'U': base = "unicode string"; break;
      case 'S': base = "byte string"; break;
      case 'V': base = "void"; break;
      case 'M': base = "datetime64"; break;
      case 'm': base = "timedelta64"; break;
      default: break;
    }
  } else if (kind == 'O') {
    base = "Python object";
  }
  if (base.empty()) return "'" + descr + "'";
  return "'" + descr + "' (" + order + base + ")";
}

Status check_header(const PyValue& dict, const std::string& what, Array* out) {
  if (dict.kind != PyValue::Kind::kDict) {
    return make_status(StatusCode::kInvalidArgument, what,
                       ": unparsable header dict: the header is not a dict but ", dict.text);
  }
  static const char* const kKeys[] = {"descr", "fortran_order", "shape"};
  for (const char* k : kKeys) {
    bool found = false;
    for (const auto& key : dict.keys) found |= key == k;
    if (!found) {
      return make_status(StatusCode::kInvalidArgument, what, ": header dict is missing key '", k,
                         "' (it must have exactly 'descr', 'fortran_order' and 'shape')");
    }
  }
  for (const auto& key : dict.keys) {
    if (key != "descr" && key != "fortran_order" && key != "shape") {
      return make_status(StatusCode::kInvalidArgument, what, ": header dict has unexpected key '",
                         key, "' (it must have exactly 'descr', 'fortran_order' and 'shape')");
    }
  }
  auto get = [&](const char* k) -> const PyValue& {
    for (std::size_t i = 0; i < dict.keys.size(); ++i)
      if (dict.keys[i] == k) return dict.items[i];
    return dict;  // unreachable: presence checked above
  };

  const PyValue& descr = get("descr");
  if (descr.kind != PyValue::Kind::kStr) {
    return make_status(StatusCode::kInvalidArgument, what, ": dtype ", descr.text,
                       " (structured or non-standard) is not supported: only float32 ('<f4') "
                       "is accepted");
  }
  if (descr.str != "<f4") {
    if (descr.str == ">f4") {
      return make_status(StatusCode::kInvalidArgument, what,
                         ": dtype '>f4' is big-endian float32, which is not supported: only "
                         "little-endian float32 ('<f4') is accepted (use arr.astype('<f4'))");
    }
    const bool big = !descr.str.empty() && descr.str[0] == '>';
    return make_status(StatusCode::kInvalidArgument, what, ": ", big ? "big-endian " : "", "dtype ",
                       describe_descr(descr.str),
                       " is not supported: only float32 ('<f4') is accepted (use "
                       "arr.astype(np.float32))");
  }

  const PyValue& fortran = get("fortran_order");
  if (fortran.kind != PyValue::Kind::kBool) {
    return make_status(StatusCode::kInvalidArgument, what,
                       ": 'fortran_order' must be True or False, got ", fortran.text);
  }
  if (fortran.boolean) {
    return make_status(StatusCode::kInvalidArgument, what,
                       ": fortran_order is True (column-major data), which is not supported: "
                       "save a C-order array (np.ascontiguousarray)");
  }

  const PyValue& shape = get("shape");
  if (shape.kind != PyValue::Kind::kTuple) {
    return make_status(StatusCode::kInvalidArgument, what,
                       ": 'shape' must be a tuple of non-negative integers, got ", shape.text);
  }
  out->shape.clear();
  for (const auto& e : shape.items) {
    if (e.kind != PyValue::Kind::kInt) {
      return make_status(StatusCode::kInvalidArgument, what,
                         ": 'shape' must be a tuple of non-negative integers, got ", shape.text);
    }
    if (e.negative && (e.magnitude != 0 || e.overflow)) {
      return make_status(StatusCode::kInvalidArgument, what, ": negative extent ", e.text,
                         " in shape ", shape.text);
    }
    if (e.overflow) {
      return make_status(StatusCode::kInvalidArgument, what, ": extent ", e.text, " in shape ",
                         shape.text, " overflows 64 bits");
    }
    out->shape.push_back(e.magnitude);
  }
  return Status::success();
}

}  // namespace

std::string shape_to_string(const std::vector<std::uint64_t>& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) s += ", ";
    s += std::to_string(shape[i]);
  }
  if (shape.size() == 1) s += ",";
  return s + ")";
}

Result<std::uint64_t> element_count(const std::vector<std::uint64_t>& shape) {
  // A zero extent makes the product 0 whatever the others are (numpy agrees).
  for (auto e : shape)
    if (e == 0) return std::uint64_t{0};
  std::uint64_t p = 1;
  for (auto e : shape) {
    if (p > std::numeric_limits<std::uint64_t>::max() / e) {
      return make_status(StatusCode::kInvalidArgument, "shape ", shape_to_string(shape),
                         " overflows: the element count does not fit 64 bits");
    }
    p *= e;
  }
  return p;
}

Result<Array> parse(Span<const std::uint8_t> bytes, const std::string& what) {
  const std::size_t size = bytes.size();
  if (size < kMagicLen || std::memcmp(bytes.data(), kMagic, kMagicLen) != 0) {
    return make_status(StatusCode::kInvalidArgument, what,
                       ": bad magic: not a .npy file (it must start with \"\\x93NUMPY\")");
  }
  if (size < kMagicLen + 2) {
    return make_status(StatusCode::kInvalidArgument, what, ": file ends inside the .npy preamble (",
                       size, " bytes)");
  }
  const unsigned major = bytes[6], minor = bytes[7];
  if (!((major == 1 || major == 2 || major == 3) && minor == 0)) {
    return make_status(StatusCode::kInvalidArgument, what, ": unsupported .npy version ", major,
                       ".", minor, " (gradcomp reads 1.0, 2.0 and 3.0)");
  }
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  const std::size_t header_start = kMagicLen + 2 + len_bytes;
  if (size < header_start) {
    return make_status(StatusCode::kInvalidArgument, what, ": file ends inside the .npy preamble (",
                       size, " bytes)");
  }
  std::uint64_t header_len = 0;
  for (std::size_t i = 0; i < len_bytes; ++i) {
    header_len |= static_cast<std::uint64_t>(bytes[kMagicLen + 2 + i]) << (8 * i);
  }
  if (header_len > size - header_start) {
    return make_status(StatusCode::kInvalidArgument, what, ": header length ", header_len,
                       " extends beyond the end of the file (", size - header_start,
                       " bytes after the preamble)");
  }
  const std::string_view header(reinterpret_cast<const char*>(bytes.data()) + header_start,
                                static_cast<std::size_t>(header_len));

  PyValue dict;
  LiteralParser parser(header);
  Status st = parser.parse_all(&dict);
  if (!st.ok()) return make_status(st.code(), what, ": ", st.message());
  Array out;
  GRADCOMP_TRY(check_header(dict, what, &out));

  auto count = element_count(out.shape);
  if (!count.ok()) return make_status(count.status().code(), what, ": ", count.status().message());
  const std::uint64_t data_start = header_start + header_len;
  const std::uint64_t have = size - data_start;
  if (count.value() > std::numeric_limits<std::uint64_t>::max() / 4) {
    return make_status(StatusCode::kInvalidArgument, what, ": shape ", shape_to_string(out.shape),
                       " overflows: ", count.value(),
                       " float32 values do not fit 64-bit byte counts");
  }
  const std::uint64_t need = count.value() * 4;
  if (have != need) {
    return make_status(StatusCode::kInvalidArgument, what, ": data is ", have, " bytes but shape ",
                       shape_to_string(out.shape), " of float32 needs ", need,
                       have < need ? " (data shorter than the shape says: truncated file)"
                                   : " (data longer than the shape says: trailing bytes)");
  }
  out.data.resize(static_cast<std::size_t>(count.value()));
  const std::uint8_t* p = bytes.data() + data_start;
  for (std::size_t i = 0; i < out.data.size(); ++i, p += 4) {
    const std::uint32_t u =
        static_cast<std::uint32_t>(p[0]) | (static_cast<std::uint32_t>(p[1]) << 8) |
        (static_cast<std::uint32_t>(p[2]) << 16) | (static_cast<std::uint32_t>(p[3]) << 24);
    out.data[i] = bits_float(u);
  }
  return out;
}

Result<std::vector<std::uint8_t>> read_bytes(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) {
    return make_status(StatusCode::kIoError, path,
                       ": cannot open for reading: ", std::strerror(errno));
  }
  std::vector<std::uint8_t> bytes;
  std::uint8_t buf[1 << 16];
  for (;;) {
    const std::size_t got = std::fread(buf, 1, sizeof buf, f.get());
    bytes.insert(bytes.end(), buf, buf + got);
    if (got < sizeof buf) break;
  }
  if (std::ferror(f.get())) {
    return make_status(StatusCode::kIoError, path, ": read error: ", std::strerror(errno));
  }
  return bytes;
}

Status write_bytes(const std::string& path, Span<const std::uint8_t> bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) {
    return make_status(StatusCode::kIoError, path,
                       ": cannot open for writing: ", std::strerror(errno));
  }
  const std::size_t put = bytes.empty() ? 0 : std::fwrite(bytes.data(), 1, bytes.size(), f);
  const bool ok = put == bytes.size();
  const bool closed = std::fclose(f) == 0;
  if (!ok || !closed) {
    return make_status(StatusCode::kIoError, path, ": write error: ", std::strerror(errno));
  }
  return Status::success();
}

Result<Array> read_file(const std::string& path) {
  auto bytes = read_bytes(path);
  if (!bytes.ok()) return bytes.status();
  return parse(Span<const std::uint8_t>(bytes.value()), path);
}

Result<std::vector<std::uint8_t>> encode(const std::vector<std::uint64_t>& shape,
                                         Span<const float> data) {
  auto count = element_count(shape);
  if (!count.ok()) return count.status();
  GRADCOMP_CHECK_ARG(count.value() == data.size(), "npy: shape ", shape_to_string(shape), " holds ",
                     count.value(), " elements but ", data.size(), " were given");
  std::string dict =
      "{'descr': '<f4', 'fortran_order': False, 'shape': " + shape_to_string(shape) + ", }";
  // Version 1.0 stores the header length in 16 bits; fall back to 2.0 only if it is too long.
  std::size_t preamble = kMagicLen + 2 + 2;
  std::size_t total = preamble + dict.size() + 1;  // + '\n'
  std::size_t padded = (total + kAlign - 1) / kAlign * kAlign;
  unsigned major = 1;
  if (padded - preamble > 0xFFFF) {
    major = 2;
    preamble = kMagicLen + 2 + 4;
    total = preamble + dict.size() + 1;
    padded = (total + kAlign - 1) / kAlign * kAlign;
  }
  const std::size_t header_len = padded - preamble;
  std::vector<std::uint8_t> out;
  out.reserve(padded + data.size() * 4);
  out.insert(out.end(), kMagic, kMagic + kMagicLen);
  out.push_back(static_cast<std::uint8_t>(major));
  out.push_back(0);
  for (std::size_t i = 0; i < preamble - kMagicLen - 2; ++i) {
    out.push_back(static_cast<std::uint8_t>(header_len >> (8 * i)));
  }
  out.insert(out.end(), dict.begin(), dict.end());
  out.resize(padded - 1, static_cast<std::uint8_t>(' '));
  out.push_back(static_cast<std::uint8_t>('\n'));
  for (float v : data) {
    const std::uint32_t u = float_bits(v);
    for (int b = 0; b < 4; ++b) out.push_back(static_cast<std::uint8_t>(u >> (8 * b)));
  }
  return out;
}

Status write_file(const std::string& path, const std::vector<std::uint64_t>& shape,
                  Span<const float> data) {
  auto bytes = encode(shape, data);
  if (!bytes.ok()) return make_status(bytes.status().code(), path, ": ", bytes.status().message());
  return write_bytes(path, Span<const std::uint8_t>(bytes.value()));
}

}  // namespace gradcomp::npy
