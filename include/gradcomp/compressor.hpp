// Compressor descriptors: one value type for every compressor of algorithms.md §4, parsed from
// and printed to case strings ("topk:density=0.001,n=1048579,seed=7").
//
// A descriptor says *what* to compute. The per-call context (step, tensor id, rank) lives in
// CompressContext because it changes every step while the descriptor does not.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gradcomp/case_string.hpp"
#include "gradcomp/span.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp {

// The numeric value is the compressor id written in every payload header: never renumber.
enum class CompressorKind : std::uint8_t {
  kIdentity = 1,
  kFp16 = 2,
  kBf16 = 3,
  kSign = 4,       // 1 bit per element, sgn(0) = +1, no scale
  kBlockSign = 5,  // blockwise scaled sign (EF-SignSGD, dist-EF-blockSGD)
  kQsgd = 6,
  kTernGrad = 7,
  kTopK = 8,        // exact top-k, ties: larger |x| first, then lower index
  kDgc = 9,         // DGC sampled-threshold top-k (§5.4.1), or exact selection
  kRandK = 10,      // random-k, shared or private indices
  kThreshold = 11,  // |x| > tau
  kGrbs = 12,       // CSER globally-randomized blockwise sparsifier (tensor axes)
  kRbgs = 13,       // GMC random block (Xu & Huang URSB rule by default)
  kQsgdTopK = 14,   // Qsparse Q_s o Top_k
  kQsgdRandK = 15,  // Qsparse Q_s o Rand_k
  kSignTopK = 16,   // Qsparse SignTop_k
  kPowerSgd = 17,   // rank-r power iteration, single-worker view
};

enum class NonfinitePolicy : std::uint8_t { kError, kPropagate };
enum class SignScale : std::uint8_t { kL1, kL2, kNone };
enum class QsgdNorm : std::uint8_t { kL2, kMax };
enum class TernScaler : std::uint8_t { kLocal, kShared };
enum class IndexMode : std::uint8_t { kShared, kPrivate };
enum class RandKScale : std::uint8_t { kNone, kUnbiased };
enum class DgcSelection : std::uint8_t { kCode, kExact };
enum class RoundMode : std::uint8_t { kHalfEven, kHalfUp };
enum class RbgsAlign : std::uint8_t { kWrap, kPartition };

struct CompressorDesc {
  CompressorKind kind = CompressorKind::kIdentity;

  // Common to every compressor.
  std::uint64_t n = 0;     // elements of the flattened input
  std::uint64_t seed = 0;  // global seed of the counter RNG (part of every stream key)
  NonfinitePolicy nonfinite = NonfinitePolicy::kError;
  // Tensor layout of the flattened input: one shape per tensor segment, C order. Empty means
  // one 1-D tensor of n elements. Used by block=tensor, terngrad, grbs, rbgs and powersgd.
  std::vector<std::vector<std::uint64_t>> shapes;

  // Sparsifiers (topk, dgc, randk, rbgs, qsgd_topk, qsgd_randk, signtopk).
  double density = 0.001;  // k = clamp(ceil(density * n), 1, n); density 0 -> k = 0
  std::int64_t k = -1;     // explicit k (>= 0) instead of a density; -1 = use density

  // blocksign
  SignScale scale = SignScale::kL1;
  std::uint64_t block = 0;  // fixed block size; 0 = one block per tensor segment

  // qsgd and the Qsparse compositions
  std::uint32_t levels = 1;    // s >= 1
  std::uint64_t bucket = 512;  // qsgd bucket size; 0 = one bucket per tensor segment
  QsgdNorm norm = QsgdNorm::kL2;
  bool scaled = false;  // qsgd_topk/qsgd_randk: multiply by 1/(1 + beta_{k,s})

  // terngrad
  double clip = 2.5;  // clip factor c (0 disables clipping)
  TernScaler scaler = TernScaler::kLocal;

  // randk, qsgd_randk
  IndexMode indices = IndexMode::kShared;
  RandKScale randk_scale = RandKScale::kNone;

  // dgc
  double sample_ratio = 0.01;
  DgcSelection selection = DgcSelection::kCode;

  // threshold
  double tau = 0.0;

  // grbs
  double rho_layer = 1.0;
  double rho0 = 0.03125;
  double rho1 = 1.0;
  RoundMode round = RoundMode::kHalfEven;

  // rbgs
  RbgsAlign align = RbgsAlign::kWrap;

  // powersgd
  std::uint32_t rank = 1;
  bool warm_start = true;
  double eps = 1e-8;

  bool operator==(const CompressorDesc& o) const;
  bool operator!=(const CompressorDesc& o) const { return !(*this == o); }

  // Canonical case string: the name, then every option that applies to this kind, always
  // in the same order (n and seed first). parse_compressor(x.to_string()) == x.
  std::string to_string() const;
};

// Parses and validates a case string. Unknown compressors, unknown or repeated keys, keys that
// do not apply to the compressor and out-of-range values are errors naming the key.
Result<CompressorDesc> parse_compressor(std::string_view text);

// Checks ranges and cross-field rules (e.g. shapes must sum to n). parse_compressor calls it;
// call it yourself after building a descriptor in code.
Status validate(const CompressorDesc& desc);

const char* compressor_name(CompressorKind kind);
Result<CompressorKind> compressor_kind_from_name(std::string_view name);

// Documentation of every compressor and its options (for `gradcomp list` and docs).
struct OptionInfo {
  std::string key;
  std::string default_value;  // as printed
  std::string help;
};
struct CompressorInfo {
  CompressorKind kind;
  std::string name;
  std::string summary;
  std::vector<OptionInfo> options;  // compressor-specific options (common ones excluded)
  bool variable_size;               // payload size depends on the data (dgc, threshold)
};
const std::vector<CompressorInfo>& compressor_catalog();
const std::vector<OptionInfo>& common_options();
// True for compressors whose payload size depends on the data (dgc, threshold).
bool compressor_is_variable_size(CompressorKind kind);

// ---- Derived quantities shared by every backend -------------------------------------------

// k for a sparsifier over m elements: explicit k clamped to m, or ceil(density * m) clamped to
// [1, m] (density 0 -> 0). The product is rounded with a 1e-12 relative guard so that decimal
// densities such as 0.001 * 1000 give exactly 1.
std::uint64_t sparsifier_k(const CompressorDesc& desc, std::uint64_t m);

// Tensor segments [offset, offset + size) of the flattened input, in layout order.
struct Segment {
  std::uint64_t offset;
  std::uint64_t size;
  std::vector<std::uint64_t> shape;
};
std::vector<Segment> tensor_segments(const CompressorDesc& desc);

// Blocks [offset, offset + size) used by blocksign (fixed size, shorter last block; or one per
// segment) and by qsgd buckets / terngrad scalers.
std::vector<Segment> sign_blocks(const CompressorDesc& desc);
std::vector<Segment> qsgd_buckets(const CompressorDesc& desc);

// Bits of one QSGD level code: ceil(log2(s + 1)).
std::uint32_t qsgd_level_bits(std::uint32_t levels);

}  // namespace gradcomp
