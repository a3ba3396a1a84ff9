// Test helper for the gradcomp CLI tests: writes .npy fixtures (well-formed and malformed) and
// compares files, so the tests need neither Python nor NumPy.
//
//   npy_fixture normal PATH SHAPE [SEED]   N(0,1) values (RngStream(SEED, kTestData, 0, 0, 0))
//   npy_fixture zeros PATH SHAPE           all zeros
//   npy_fixture malformed KIND PATH        KIND: magic version header-length dict missing-key
//                                          dtype big-endian fortran negative-shape truncated
//                                          trailing
//   npy_fixture same A B                   exit 0 if the files are byte-identical, else 1
//
// SHAPE is "8x16", "5" or "()" (0-d).
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "gradcomp/rng.hpp"
#include "npy.hpp"

namespace {

using gradcomp::Span;

bool parse_shape(const std::string& text, std::vector<std::uint64_t>* shape) {
  shape->clear();
  if (text == "()") return true;
  std::size_t start = 0;
  for (;;) {
    const std::size_t x = text.find('x', start);
    const std::string part = text.substr(start, x == std::string::npos ? x : x - start);
    if (part.empty() || part.find_first_not_of("0123456789") != std::string::npos) return false;
    shape->push_back(std::stoull(part));
    if (x == std::string::npos) return true;
    start = x + 1;
  }
}

std::vector<std::uint8_t> raw(const std::string& header, std::size_t data_bytes,
                              unsigned char major = 1) {
  std::vector<std::uint8_t> out = {0x93, 'N', 'U', 'M', 'P', 'Y', major, 0};
  const std::size_t len = header.size();
  out.push_back(static_cast<std::uint8_t>(len));
  out.push_back(static_cast<std::uint8_t>(len >> 8));
  out.insert(out.end(), header.begin(), header.end());
  out.resize(out.size() + data_bytes, 0);
  return out;
}

std::string dict(const std::string& descr, const std::string& fortran, const std::string& shape) {
  return "{'descr': '" + descr + "', 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
}

int write(const std::string& path, const std::vector<std::uint8_t>& bytes) {
  gradcomp::Status s = gradcomp::npy::write_bytes(path, Span<const std::uint8_t>(bytes));
  if (!s.ok()) {
    std::fprintf(stderr, "npy_fixture: %s\n", s.to_string().c_str());
    return 1;
  }
  return 0;
}

int usage() {
  std::fprintf(stderr,
               "usage: npy_fixture normal|zeros PATH SHAPE [SEED] | malformed KIND PATH"
               " | same A B\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const std::string cmd = argv[1];
  if (cmd == "normal" || cmd == "zeros") {
    std::vector<std::uint64_t> shape;
    if (!parse_shape(argv[3], &shape)) return usage();
    const std::uint64_t seed = argc > 4 ? std::stoull(argv[4]) : 1;
    std::uint64_t n = 1;
    for (auto e : shape) n *= e;
    std::vector<float> data(n, 0.0f);
    if (cmd == "normal") {
      const gradcomp::RngStream rng(seed, gradcomp::RngPurpose::kTestData, 0, 0, 0);
      for (std::uint64_t i = 0; i < n; ++i) data[i] = static_cast<float>(rng.normal(i));
    }
    gradcomp::Status s = gradcomp::npy::write_file(argv[2], shape, data);
    if (!s.ok()) {
      std::fprintf(stderr, "npy_fixture: %s\n", s.to_string().c_str());
      return 1;
    }
    return 0;
  }
  if (cmd == "same") {
    auto a = gradcomp::npy::read_bytes(argv[2]);
    auto b = gradcomp::npy::read_bytes(argv[3]);
    if (!a.ok() || !b.ok()) return 2;
    if (a.value() != b.value()) {
      std::fprintf(stderr, "npy_fixture: %s and %s differ\n", argv[2], argv[3]);
      return 1;
    }
    return 0;
  }
  if (cmd == "malformed") {
    const std::string kind = argv[2];
    const std::string path = argc > 3 ? argv[3] : "";
    const std::string good = dict("<f4", "False", "(4,)");
    if (kind == "magic") {
      auto b = raw(good, 16);
      b[1] = 'X';
      return write(path, b);
    }
    if (kind == "version") return write(path, raw(good, 16, 4));
    if (kind == "header-length") {
      auto b = raw(good, 16);
      b[8] = 0xFF;
      b[9] = 0x7F;
      return write(path, b);
    }
    if (kind == "dict") return write(path, raw("{'descr': '<f4', 'shape': (4,\n", 16));
    if (kind == "missing-key") return write(path, raw("{'descr': '<f4', 'shape': (4,), }\n", 16));
    if (kind == "dtype") return write(path, raw(dict("<f8", "False", "(4,)"), 32));
    if (kind == "big-endian") return write(path, raw(dict(">f4", "False", "(4,)"), 16));
    if (kind == "fortran") return write(path, raw(dict("<f4", "True", "(2, 2)"), 16));
    if (kind == "negative-shape") return write(path, raw(dict("<f4", "False", "(-4,)"), 16));
    if (kind == "truncated") return write(path, raw(good, 15));
    if (kind == "trailing") return write(path, raw(good, 17));
    return usage();
  }
  return usage();
}
