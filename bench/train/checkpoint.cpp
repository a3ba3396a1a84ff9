#include "checkpoint.hpp"

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>

namespace gradcomp::train {
namespace {

constexpr char kMagic[8] = {'G', 'C', 'T', 'R', 'A', 'I', 'N', '\n'};

std::uint64_t fnv1a(const std::uint8_t* p, std::size_t n) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

class Writer {
 public:
  void u32(std::uint32_t v) { uint(v, 4); }
  void u64(std::uint64_t v) { uint(v, 8); }
  void bytes(const void* p, std::size_t n) {
    u64(n);
    const auto* b = static_cast<const std::uint8_t*>(p);
    out.insert(out.end(), b, b + n);
  }
  std::vector<std::uint8_t> out;

 private:
  void uint(std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
};

class Reader {
 public:
  Reader(const std::uint8_t* p, std::size_t n) : p_(p), n_(n) {}
  Status u32(std::uint32_t* v, const char* what) {
    std::uint64_t x = 0;
    GRADCOMP_TRY(uint(&x, 4, what));
    *v = static_cast<std::uint32_t>(x);
    return Status::success();
  }
  Status u64(std::uint64_t* v, const char* what) { return uint(v, 8, what); }
  Status bytes(std::vector<std::uint8_t>* v, const char* what) {
    std::uint64_t len = 0;
    GRADCOMP_TRY(u64(&len, what));
    GRADCOMP_CHECK_PAYLOAD(len <= n_ - pos_, "checkpoint: ", what, " claims ", len, " bytes, only ",
                           n_ - pos_, " left");
    v->assign(p_ + pos_, p_ + pos_ + len);
    pos_ += len;
    return Status::success();
  }
  Status str(std::string* s, const char* what) {
    std::vector<std::uint8_t> b;
    GRADCOMP_TRY(bytes(&b, what));
    s->assign(b.begin(), b.end());
    return Status::success();
  }
  std::size_t pos() const { return pos_; }

 private:
  Status uint(std::uint64_t* v, int n, const char* what) {
    GRADCOMP_CHECK_PAYLOAD(std::size_t(n) <= n_ - pos_, "checkpoint: truncated in ", what);
    std::uint64_t x = 0;
    for (int i = 0; i < n; ++i) x |= std::uint64_t(p_[pos_ + i]) << (8 * i);
    pos_ += n;
    *v = x;
    return Status::success();
  }
  const std::uint8_t* p_;
  std::size_t n_;
  std::size_t pos_ = 0;
};

std::map<std::string, std::string> parse_lines(const std::string& text,
                                               std::vector<std::string>* order) {
  std::map<std::string, std::string> kv;
  std::istringstream is(text);
  std::string line;
  while (std::getline(is, line)) {
    const auto eq = line.find('=');
    const std::string k = line.substr(0, eq);
    if (kv.count(k) == 0 && order != nullptr) order->push_back(k);
    kv[k] = eq == std::string::npos ? "" : line.substr(eq + 1);
  }
  return kv;
}

}  // namespace

std::vector<std::uint8_t> encode_checkpoint(const Checkpoint& c) {
  Writer w;
  w.out.insert(w.out.end(), kMagic, kMagic + 8);
  w.u32(kCheckpointVersion);
  w.u32(static_cast<std::uint32_t>(c.ranks.size()));
  w.u32(c.epochs_done);
  w.u64(c.step);
  w.bytes(c.config.data(), c.config.size());
  w.bytes(c.epochs_json.data(), c.epochs_json.size());
  for (const RankState& r : c.ranks) {
    w.bytes(r.optimizer.data(), r.optimizer.size());
    w.bytes(r.buffers.data(), r.buffers.size());
  }
  w.u64(fnv1a(w.out.data(), w.out.size()));
  return std::move(w.out);
}

Result<Checkpoint> decode_checkpoint(Span<const std::uint8_t> bytes) {
  GRADCOMP_CHECK_PAYLOAD(bytes.size() >= 8 + 8 && std::memcmp(bytes.data(), kMagic, 8) == 0,
                         "checkpoint: not a gradcomp-train checkpoint (bad magic)");
  const std::size_t body = bytes.size() - 8;
  std::uint64_t want = 0;
  for (int i = 0; i < 8; ++i) want |= std::uint64_t(bytes[body + i]) << (8 * i);
  GRADCOMP_CHECK_PAYLOAD(fnv1a(bytes.data(), body) == want,
                         "checkpoint: checksum mismatch (file damaged or truncated)");
  Reader r(bytes.data() + 8, body - 8);
  Checkpoint c;
  std::uint32_t version = 0, ranks = 0;
  GRADCOMP_TRY(r.u32(&version, "version"));
  GRADCOMP_CHECK_PAYLOAD(version == kCheckpointVersion, "checkpoint: version ", version,
                         " is not supported (this build reads ", kCheckpointVersion, ")");
  GRADCOMP_TRY(r.u32(&ranks, "rank count"));
  GRADCOMP_TRY(r.u32(&c.epochs_done, "epoch count"));
  GRADCOMP_TRY(r.u64(&c.step, "step count"));
  GRADCOMP_TRY(r.str(&c.config, "config"));
  GRADCOMP_TRY(r.str(&c.epochs_json, "epoch records"));
  GRADCOMP_CHECK_PAYLOAD(ranks >= 1 && ranks <= (1u << 20), "checkpoint: rank count ", ranks);
  c.ranks.resize(ranks);
  for (RankState& s : c.ranks) {
    GRADCOMP_TRY(r.bytes(&s.optimizer, "optimizer state"));
    GRADCOMP_TRY(r.bytes(&s.buffers, "model buffers"));
  }
  GRADCOMP_CHECK_PAYLOAD(r.pos() == body - 8, "checkpoint: ", body - 8 - r.pos(),
                         " unexpected bytes before the checksum");
  return c;
}

Status write_file_atomic(const std::string& path, Span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream os(tmp, std::ios::binary | std::ios::trunc);
    if (!os) return make_status(StatusCode::kIoError, tmp, ": cannot open for writing");
    os.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
    os.flush();
    if (!os) return make_status(StatusCode::kIoError, tmp, ": write failed");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_status(StatusCode::kIoError, "cannot rename ", tmp, " to ", path);
  }
  return Status::success();
}

Result<std::vector<std::uint8_t>> read_file(const std::string& path) {
  std::ifstream is(path, std::ios::binary);
  if (!is) return make_status(StatusCode::kIoError, path, ": cannot open");
  std::vector<std::uint8_t> b((std::istreambuf_iterator<char>(is)),
                              std::istreambuf_iterator<char>());
  if (is.bad()) return make_status(StatusCode::kIoError, path, ": read failed");
  return b;
}

std::string config_mismatch(const std::string& saved, const std::string& current) {
  std::vector<std::string> order;
  const auto a = parse_lines(saved, &order);
  const auto b = parse_lines(current, &order);
  for (const std::string& k : order) {
    const auto ia = a.find(k), ib = b.find(k);
    const std::string va = ia == a.end() ? "(absent)" : ia->second;
    const std::string vb = ib == b.end() ? "(absent)" : ib->second;
    if (va != vb) return k + ": checkpoint has '" + va + "', this run has '" + vb + "'";
  }
  return "";
}

}  // namespace gradcomp::train
