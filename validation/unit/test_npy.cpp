// The .npy reader/writer of the gradcomp tool (tools/npy.hpp).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gradcomp/dtype.hpp"
#include "npy.hpp"

namespace gradcomp {
namespace {

using Bytes = std::vector<std::uint8_t>;

// A file with the given header text (taken as is) and `data_bytes` bytes of data.
Bytes make_file(const std::string& header, std::size_t data_bytes, unsigned major = 1,
                unsigned minor = 0) {
  Bytes out = {0x93,
               'N',
               'U',
               'M',
               'P',
               'Y',
               static_cast<std::uint8_t>(major),
               static_cast<std::uint8_t>(minor)};
  const std::size_t len_bytes = major == 1 ? 2 : 4;
  for (std::size_t i = 0; i < len_bytes; ++i) {
    out.push_back(static_cast<std::uint8_t>(header.size() >> (8 * i)));
  }
  out.insert(out.end(), header.begin(), header.end());
  for (std::size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<std::uint8_t>(i));
  return out;
}

std::string dict(const std::string& descr, const std::string& fortran, const std::string& shape) {
  return "{'descr': " + descr + ", 'fortran_order': " + fortran + ", 'shape': " + shape + ", }\n";
}

Result<npy::Array> parse(const Bytes& b) {
  return npy::parse(Span<const std::uint8_t>(b), "t.npy");
}

// The file is rejected with kInvalidArgument and a message containing `what`.
void expect_rejected(const Bytes& b, const std::string& what) {
  auto r = parse(b);
  ASSERT_FALSE(r.ok()) << "accepted a file that should fail with '" << what << "'";
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << r.status().to_string();
  EXPECT_NE(r.status().message().find(what), std::string::npos)
      << "message '" << r.status().message() << "' does not contain '" << what << "'";
  EXPECT_EQ(r.status().message().rfind("t.npy: ", 0), 0u) << r.status().message();
}

std::vector<float> sample(std::size_t n) {
  std::vector<float> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<float>(i) * 0.75f - 3.0f;
  if (n > 2) {
    v[1] = -0.0f;
    v[2] = std::numeric_limits<float>::infinity();
  }
  if (n > 3) v[3] = std::nanf("");
  return v;
}

TEST(Npy, RoundTripOfSeveralShapes) {
  const std::vector<std::vector<std::uint64_t>> shapes = {
      {}, {0}, {1}, {7}, {2, 3}, {0, 3}, {3, 0}, {2, 3, 4}, {1, 1, 1, 1, 5}, {100, 41}};
  for (const auto& shape : shapes) {
    std::uint64_t n = 1;
    for (auto e : shape) n *= e;
    const std::vector<float> data = sample(n);
    auto bytes = npy::encode(shape, data);
    ASSERT_TRUE(bytes.ok()) << bytes.status().to_string();
    // Version 1.0 and the data starts at a multiple of 64 bytes.
    EXPECT_EQ(bytes->at(6), 1);
    EXPECT_EQ(bytes->at(7), 0);
    const std::size_t header_len = bytes->at(8) | (bytes->at(9) << 8);
    EXPECT_EQ((10 + header_len) % 64, 0u) << npy::shape_to_string(shape);
    EXPECT_EQ(bytes->size(), 10 + header_len + 4 * n);
    EXPECT_EQ(bytes->at(10 + header_len - 1), '\n');
    auto back = parse(bytes.value());
    ASSERT_TRUE(back.ok()) << npy::shape_to_string(shape) << ": " << back.status().to_string();
    EXPECT_EQ(back->shape, shape);
    ASSERT_EQ(back->data.size(), n);
    for (std::size_t i = 0; i < n; ++i) {
      EXPECT_EQ(float_bits(back->data[i]), float_bits(data[i])) << i;
    }
  }
}

TEST(Npy, RoundTripThroughAFile) {
  const std::string path = ::testing::TempDir() + "gradcomp_test_npy_roundtrip.npy";
  const std::vector<float> data = sample(12);
  ASSERT_TRUE(npy::write_file(path, {3, 4}, data).ok());
  auto back = npy::read_file(path);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(back->shape, (std::vector<std::uint64_t>{3, 4}));
  for (std::size_t i = 0; i < data.size(); ++i) {
    EXPECT_EQ(float_bits(back->data[i]), float_bits(data[i]));
  }
  std::remove(path.c_str());
}

// The bytes of a (3,) float32 array [1, -2, 0.5], written by hand from the format spec: magic,
// version 1.0, header length 118 (u16 LE) so that 10 + 118 = 128 is a multiple of 64, the dict
// padded with spaces and ended by '\n', then the little-endian float32 values.
TEST(Npy, KnownFileIsByteExact) {
  std::string expected = "\x93NUMPY";
  expected += '\x01';
  expected += '\x00';
  expected += 'v';  // 118 = 0x76
  expected += '\x00';
  const std::string text = "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }";
  expected += text;
  expected += std::string(128 - 10 - text.size() - 1, ' ');
  expected += '\n';
  ASSERT_EQ(expected.size(), 128u);
  const unsigned char data[] = {0x00, 0x00, 0x80, 0x3F,   // 1.0f  = 0x3F800000
                                0x00, 0x00, 0x00, 0xC0,   // -2.0f = 0xC0000000
                                0x00, 0x00, 0x00, 0x3F};  // 0.5f  = 0x3F000000
  expected.append(reinterpret_cast<const char*>(data), sizeof data);

  auto bytes = npy::encode({3}, std::vector<float>{1.0f, -2.0f, 0.5f});
  ASSERT_TRUE(bytes.ok());
  EXPECT_EQ(std::string(bytes->begin(), bytes->end()), expected);

  // 0-d and 2-D headers as Python prints the shape tuple.
  auto scalar = npy::encode({}, std::vector<float>{2.5f});
  ASSERT_TRUE(scalar.ok());
  const std::string s(scalar->begin(), scalar->end());
  EXPECT_NE(s.find("{'descr': '<f4', 'fortran_order': False, 'shape': (), }"), std::string::npos);
  EXPECT_EQ(s.size(), 128u + 4u);  // 10 + 55 + 1 bytes of header round up to 128
  auto matrix = npy::encode({2, 3}, std::vector<float>(6, 0.0f));
  ASSERT_TRUE(matrix.ok());
  EXPECT_NE(std::string(matrix->begin(), matrix->end()).find("'shape': (2, 3), }"),
            std::string::npos);
}

TEST(Npy, ReadsOtherValidForms) {
  // Versions 2.0 and 3.0 (u32 header length).
  for (unsigned major : {2u, 3u}) {
    auto r = parse(make_file(dict("'<f4'", "False", "(2,)"), 8, major));
    ASSERT_TRUE(r.ok()) << major << ": " << r.status().to_string();
    EXPECT_EQ(r->shape, (std::vector<std::uint64_t>{2}));
  }
  // Double quotes, any key order, no trailing comma, extra spaces, Python 2 longs, a header
  // aligned to 16 bytes only (old NumPy), no terminating newline.
  const std::string variants[] = {
      "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (2, 1)}",
      "{'shape': (2, 1), 'fortran_order': False, 'descr': '<f4'}        \n",
      "{ 'descr' : '<f4' ,'fortran_order':False,'shape':( 2 , 1 , ) , }",
      "{'descr': '<f4', 'fortran_order': False, 'shape': (2L, 1L), }   \n",
  };
  for (const auto& h : variants) {
    auto r = parse(make_file(h, 8));
    ASSERT_TRUE(r.ok()) << h << ": " << r.status().to_string();
    EXPECT_EQ(r->shape, (std::vector<std::uint64_t>{2, 1})) << h;
  }
  auto r = parse(make_file(dict("'<f4'", "False", "()"), 4));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->shape.empty());
  EXPECT_EQ(r->data.size(), 1u);
  r = parse(make_file(dict("'<f4'", "False", "(0, 5)"), 0));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->data.size(), 0u);
}

TEST(Npy, RejectsBadMagic) {
  Bytes b = make_file(dict("'<f4'", "False", "(2,)"), 8);
  b[0] = 'x';
  expect_rejected(b, "bad magic");
  expect_rejected(Bytes{}, "bad magic");
  expect_rejected(Bytes{0x93, 'N', 'U'}, "bad magic");
}

TEST(Npy, RejectsUnsupportedVersion) {
  expect_rejected(make_file(dict("'<f4'", "False", "(2,)"), 8, 4), "unsupported .npy version 4.0");
  expect_rejected(make_file(dict("'<f4'", "False", "(2,)"), 8, 1, 1),
                  "unsupported .npy version 1.1");
  expect_rejected(make_file(dict("'<f4'", "False", "(2,)"), 8, 0), "unsupported .npy version 0.0");
}

TEST(Npy, RejectsHeaderLengthBeyondTheFile) {
  Bytes b = make_file(dict("'<f4'", "False", "(2,)"), 8);
  b[8] = 0xFF;
  b[9] = 0xFF;
  expect_rejected(b, "header length 65535 extends beyond the end of the file");
  Bytes v2 = make_file(dict("'<f4'", "False", "(2,)"), 0, 2);
  v2[11] = 0x80;  // header length 2^31 + ...
  expect_rejected(v2, "extends beyond the end of the file");
  // Just past the end: the header length counts from the end of the preamble.
  const std::string h = dict("'<f4'", "False", "(2,)");
  Bytes near = make_file(h, 8);
  near[8] = static_cast<std::uint8_t>(h.size() + 9);
  expect_rejected(near, "extends beyond the end of the file");
  expect_rejected(Bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 5}, "preamble");
  expect_rejected(Bytes{0x93, 'N', 'U', 'M', 'P', 'Y', 2, 0, 5, 0}, "preamble");
}

TEST(Npy, RejectsUnparsableHeader) {
  expect_rejected(make_file("{'descr': '<f4', 'shape': (4,\n", 16), "unparsable header dict");
  expect_rejected(make_file("hello", 16), "unparsable header dict");
  expect_rejected(make_file("", 16), "unparsable header dict");
  expect_rejected(make_file("[1, 2]", 16), "unparsable header dict");
  expect_rejected(make_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4,)} x", 16),
                  "unparsable header dict");
  expect_rejected(make_file("{'descr: '<f4'}", 16), "unparsable header dict");
  expect_rejected(make_file(dict("'<f4'", "False", "(4.5,)"), 16), "unparsable header dict");
  expect_rejected(make_file("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                            "'shape': (4,)}",
                            16),
                  "repeated key 'descr'");
  expect_rejected(make_file(std::string(100, '(') + std::string(100, ')'), 16), "nesting");
}

TEST(Npy, RejectsMissingAndUnexpectedKeys) {
  expect_rejected(make_file("{'fortran_order': False, 'shape': (4,)}", 16), "missing key 'descr'");
  expect_rejected(make_file("{'descr': '<f4', 'shape': (4,)}", 16), "missing key 'fortran_order'");
  expect_rejected(make_file("{'descr': '<f4', 'fortran_order': False}", 16), "missing key 'shape'");
  expect_rejected(make_file("{}", 16), "missing key");
  expect_rejected(
      make_file("{'descr': '<f4', 'fortran_order': False, 'shape': (4,), 'foo': 1}", 16),
      "unexpected key 'foo'");
}

TEST(Npy, RejectsOtherDtypesNamingThem) {
  expect_rejected(make_file(dict("'<f8'", "False", "(2,)"), 16), "'<f8' (float64)");
  expect_rejected(make_file(dict("'<f8'", "False", "(2,)"), 16),
                  "only float32 ('<f4') is accepted");
  expect_rejected(make_file(dict("'<f2'", "False", "(2,)"), 4), "'<f2' (float16)");
  expect_rejected(make_file(dict("'<i4'", "False", "(2,)"), 8), "'<i4' (int32)");
  expect_rejected(make_file(dict("'|u1'", "False", "(2,)"), 2), "'|u1' (uint8)");
  expect_rejected(make_file(dict("'|b1'", "False", "(2,)"), 2), "(bool)");
  expect_rejected(make_file(dict("'<c8'", "False", "(2,)"), 16), "(complex64)");
  expect_rejected(make_file(dict("'|O'", "False", "(2,)"), 16), "Python object");
  expect_rejected(make_file(dict("'float32'", "False", "(2,)"), 8), "'float32'");
  expect_rejected(make_file(dict("[('a', '<f4')]", "False", "(2,)"), 8), "structured");
  expect_rejected(make_file(dict("'=f4'", "False", "(2,)"), 8), "only float32 ('<f4')");
}

TEST(Npy, RejectsBigEndian) {
  expect_rejected(make_file(dict("'>f4'", "False", "(2,)"), 8), "big-endian");
  expect_rejected(make_file(dict("'>f4'", "False", "(2,)"), 8), "little-endian float32 ('<f4')");
  expect_rejected(make_file(dict("'>f8'", "False", "(2,)"), 16), "big-endian dtype '>f8'");
}

TEST(Npy, RejectsFortranOrder) {
  expect_rejected(make_file(dict("'<f4'", "True", "(2, 2)"), 16), "fortran_order is True");
  expect_rejected(make_file(dict("'<f4'", "'no'", "(2, 2)"), 16),
                  "'fortran_order' must be True or False");
}

TEST(Npy, RejectsBadShapes) {
  expect_rejected(make_file(dict("'<f4'", "False", "(-4,)"), 16), "negative extent -4");
  expect_rejected(make_file(dict("'<f4'", "False", "(2, -1)"), 16), "negative extent -1");
  expect_rejected(make_file(dict("'<f4'", "False", "(99999999999999999999999,)"), 16),
                  "overflows 64 bits");
  expect_rejected(make_file(dict("'<f4'", "False", "(4294967296, 4294967296)"), 16), "overflows");
  expect_rejected(make_file(dict("'<f4'", "False", "(4611686018427387904,)"), 16),
                  "overflows");  // 2^62 elements: 2^64 bytes
  expect_rejected(make_file(dict("'<f4'", "False", "[4]"), 16), "'shape' must be a tuple");
  expect_rejected(make_file(dict("'<f4'", "False", "4"), 16), "'shape' must be a tuple");
  expect_rejected(make_file(dict("'<f4'", "False", "(4)"), 16), "'shape' must be a tuple");
  expect_rejected(make_file(dict("'<f4'", "False", "('4',)"), 16), "'shape' must be a tuple");
  expect_rejected(make_file(dict("'<f4'", "False", "(None,)"), 16), "'shape' must be a tuple");
}

TEST(Npy, RejectsDataOfTheWrongLength) {
  expect_rejected(make_file(dict("'<f4'", "False", "(4,)"), 15), "data shorter than the shape");
  expect_rejected(make_file(dict("'<f4'", "False", "(4,)"), 15), "data is 15 bytes");
  expect_rejected(make_file(dict("'<f4'", "False", "(4,)"), 17), "data longer than the shape");
  expect_rejected(make_file(dict("'<f4'", "False", "()"), 0), "data shorter");
  expect_rejected(make_file(dict("'<f4'", "False", "(0,)"), 4), "data longer");
}

TEST(Npy, FileErrorsAreIoErrors) {
  const std::string missing = ::testing::TempDir() + "gradcomp_no_such_dir/x.npy";
  auto r = npy::read_file(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find(missing), std::string::npos);
  Status s = npy::write_file(missing, {1}, std::vector<float>{1.0f});
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find(missing), std::string::npos);
}

TEST(Npy, EncodeChecksTheShape) {
  auto r = npy::encode({2, 3}, std::vector<float>(5, 0.0f));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("(2, 3) holds 6 elements but 5"), std::string::npos);
}

}  // namespace
}  // namespace gradcomp
