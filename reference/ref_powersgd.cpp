// powersgd: rank-r power-iteration compressor, single-worker view (algorithms.md §4.11 [A-code
// epfml, T-code PyTorch]).
//
// Per tensor segment with ndim >= 2: M is n x m (n = shape[0], m = product of the rest, row
// major), r' = min(n, m, rank). Q (m x r') is the warm-start state (ctx.powersgd, warm_start=1)
// or the shared N(0, 1) draw; P = M Q; P^ = orthogonalize(P); Q = M^T P^; the receiver outputs
// P^ Q^T. Segments with ndim <= 1 are sent dense.
//
// Body, segment by segment: matrix -> P^ (n*r' f32, row major) then Q (m*r' f32, row major);
// vector -> its values (f32). Header count = number of segments, flags = 0.
#include "gradcomp/ref/powersgd.hpp"

#include <algorithm>
#include <cmath>

#include "ref_internal.hpp"

namespace gradcomp::ref {

std::uint64_t powersgd_effective_rank(std::uint64_t n, std::uint64_t m, std::uint64_t rank) {
  return std::min({n, m, rank});
}

Status powersgd_initial_q(std::uint64_t seed, std::uint32_t step, std::uint32_t tensor_id,
                          std::uint32_t segment, std::uint64_t m, std::uint64_t r, Span<float> q) {
  GRADCOMP_CHECK_ARG(q.size() == m * r, "powersgd: initial Q has ", q.size(), " entries, expected ",
                     m, " x ", r);
  GRADCOMP_CHECK_ARG(m * r <= 0xFFFFFFFFull, "powersgd: Q of ", m, " x ", r,
                     " does not fit the 32-bit element index of the draw");
  const RngStream rng(seed, RngPurpose::kPowerSgdInit, step, tensor_id, kSharedRank);
  const std::uint64_t base = static_cast<std::uint64_t>(segment) << 32;
  for (std::uint64_t i = 0; i < m * r; ++i) q[i] = static_cast<float>(rng.normal(base | i, 0));
  return Status::success();
}

namespace {

// out (rows x cols, row major) = A B, where A(i, k) = a[i * a_row + k * a_inner] and
// B(k, j) = b[k * b_inner + j * b_col]: each entry accumulated in double over k = 0 .. inner-1
// in increasing order, then rounded once to f32. The three products of the power iteration are
// this loop with different strides.
void strided_product(const float* a, std::uint64_t a_row, std::uint64_t a_inner, const float* b,
                     std::uint64_t b_inner, std::uint64_t b_col, std::uint64_t rows,
                     std::uint64_t cols, std::uint64_t inner, float* out) {
  for (std::uint64_t i = 0; i < rows; ++i)
    for (std::uint64_t j = 0; j < cols; ++j) {
      double acc = 0.0;
      for (std::uint64_t k = 0; k < inner; ++k)
        acc += static_cast<double>(a[i * a_row + k * a_inner]) *
               static_cast<double>(b[k * b_inner + j * b_col]);
      out[i * cols + j] = static_cast<float>(acc);
    }
}

}  // namespace

Status matmul_mq(Span<const float> mat, std::uint64_t n, std::uint64_t m, Span<const float> q,
                 std::uint64_t r, Span<float> p) {
  GRADCOMP_CHECK_ARG(mat.size() == n * m && q.size() == m * r && p.size() == n * r,
                     "powersgd: M Q with M of ", mat.size(), " (", n, " x ", m, "), Q of ",
                     q.size(), " (", m, " x ", r, "), P of ", p.size(), " (", n, " x ", r, ")");
  // P(i, c) = sum_j M(i, j) Q(j, c).
  strided_product(mat.data(), m, 1, q.data(), r, 1, n, r, m, p.data());
  return Status::success();
}

Status matmul_mtp(Span<const float> mat, std::uint64_t n, std::uint64_t m, Span<const float> p,
                  std::uint64_t r, Span<float> q) {
  GRADCOMP_CHECK_ARG(mat.size() == n * m && p.size() == n * r && q.size() == m * r,
                     "powersgd: M^T P with M of ", mat.size(), " (", n, " x ", m, "), P of ",
                     p.size(), " (", n, " x ", r, "), Q of ", q.size(), " (", m, " x ", r, ")");
  // Q(j, c) = sum_i M(i, j) P(i, c).
  strided_product(mat.data(), 1, m, p.data(), r, 1, m, r, n, q.data());
  return Status::success();
}

Status matmul_pqt(Span<const float> p, std::uint64_t n, Span<const float> q, std::uint64_t m,
                  std::uint64_t r, Span<float> out) {
  GRADCOMP_CHECK_ARG(p.size() == n * r && q.size() == m * r && out.size() == n * m,
                     "powersgd: P Q^T with P of ", p.size(), " (", n, " x ", r, "), Q of ",
                     q.size(), " (", m, " x ", r, "), output of ", out.size(), " (", n, " x ", m,
                     ")");
  // out(i, j) = sum_c P(i, c) Q(j, c).
  strided_product(p.data(), r, 1, q.data(), 1, r, n, m, r, out.data());
  return Status::success();
}

Status orthogonalize(Span<float> p, std::uint64_t n, std::uint64_t r, double eps) {
  GRADCOMP_CHECK_ARG(p.size() == n * r, "powersgd: orthogonalize got ", p.size(), " entries for ",
                     n, " x ", r);
  GRADCOMP_CHECK_ARG(eps >= 0.0, "powersgd: eps must be >= 0, got ", eps);
  for (std::uint64_t c = 0; c < r; ++c) {
    double sq = 0.0;
    for (std::uint64_t i = 0; i < n; ++i) sq += static_cast<double>(p[i * r + c]) * p[i * r + c];
    const double denom = std::sqrt(sq) + eps;  // eps keeps a vanishing column finite
    for (std::uint64_t i = 0; i < n; ++i) {
      // denom == 0 only for a zero column with eps = 0: leave it zero instead of 0/0 (§7).
      p[i * r + c] = denom > 0.0 ? static_cast<float>(p[i * r + c] / denom) : 0.0f;
    }
    // Remove the component along the (now normalised) column c from every later column.
    for (std::uint64_t later = c + 1; later < r; ++later) {
      double dot = 0.0;
      for (std::uint64_t i = 0; i < n; ++i)
        dot += static_cast<double>(p[i * r + c]) * p[i * r + later];
      for (std::uint64_t i = 0; i < n; ++i)
        p[i * r + later] = static_cast<float>(p[i * r + later] - dot * p[i * r + c]);
    }
  }
  return Status::success();
}

namespace detail {
namespace {

// One tensor segment as the compressor sees it.
struct Part {
  std::uint64_t offset = 0;
  bool matrix = false;         // ndim >= 2
  std::uint64_t n = 0, m = 0;  // rows, columns (vector: n = size, m = 0)
  std::uint64_t r = 0;         // r' (matrix only)
  std::uint64_t body_floats() const { return matrix ? r * (n + m) : n; }
};

std::vector<Part> parts_of(const CompressorDesc& desc) {
  std::vector<Part> parts;
  for (const Segment& seg : tensor_segments(desc)) {
    Part part;
    part.offset = seg.offset;
    part.matrix = seg.shape.size() >= 2;
    if (part.matrix) {
      part.n = seg.shape[0];
      part.m = seg.size / part.n;
      part.r = powersgd_effective_rank(part.n, part.m, desc.rank);
    } else {
      part.n = seg.size;
    }
    parts.push_back(part);
  }
  return parts;
}

std::uint64_t body_floats(const std::vector<Part>& parts) {
  std::uint64_t total = 0;
  for (const Part& part : parts) total += part.body_floats();
  return total;
}

// Checks the warm-start state before anything is computed: it must have one entry per segment
// (or be empty, to be created), matrix entries empty or m * r' finite values, vector entries
// empty.
Status check_state(const CompressorDesc& desc, const std::vector<Part>& parts,
                   const PowerSgdState& state) {
  if (state.q.empty()) return Status::success();
  GRADCOMP_CHECK_ARG(state.q.size() == parts.size(), "powersgd: warm-start state has ",
                     state.q.size(), " Q entries but the layout has ", parts.size(),
                     " tensor segments");
  for (std::size_t s = 0; s < parts.size(); ++s) {
    const std::vector<float>& q = state.q[s];
    if (q.empty()) continue;
    GRADCOMP_CHECK_ARG(parts[s].matrix, "powersgd: warm-start Q of segment ", s, " has ", q.size(),
                       " entries but the segment is a vector (expected none)");
    GRADCOMP_CHECK_ARG(q.size() == parts[s].m * parts[s].r, "powersgd: warm-start Q of segment ", s,
                       " has ", q.size(), " entries, expected ", parts[s].m, " x ", parts[s].r,
                       " = ", parts[s].m * parts[s].r);
    if (desc.nonfinite == NonfinitePolicy::kError) {
      for (std::size_t i = 0; i < q.size(); ++i) {
        if (!std::isfinite(q[i])) {
          return make_status(StatusCode::kNonFinite, "powersgd: warm-start Q of segment ", s, " [",
                             i, "] = ", q[i], " is not finite (nonfinite=error)");
        }
      }
    }
  }
  return Status::success();
}

}  // namespace

std::uint64_t powersgd_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + 4 * body_floats(parts_of(desc));
}

Status powersgd_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
  const std::vector<Part> parts = parts_of(desc);
  PowerSgdState* state = desc.warm_start ? ctx.powersgd : nullptr;
  if (state) GRADCOMP_TRY(check_state(desc, parts, *state));

  // Everything is computed into locals first: the state changes only after success.
  std::vector<std::vector<float>> new_q(parts.size());
  std::vector<float> floats;  // the body, as values
  floats.reserve(body_floats(parts));
  for (std::size_t s = 0; s < parts.size(); ++s) {
    const Part& part = parts[s];
    const Span<const float> seg = in.subspan(part.offset, part.matrix ? part.n * part.m : part.n);
    if (!part.matrix) {
      floats.insert(floats.end(), seg.begin(), seg.end());  // vectors: dense
      continue;
    }
    std::vector<float> q;
    if (state && !state->q.empty() && !state->q[s].empty()) {
      q = state->q[s];
    } else {
      q.resize(part.m * part.r);
      GRADCOMP_TRY(powersgd_initial_q(desc.seed, ctx.step, ctx.tensor_id,
                                      static_cast<std::uint32_t>(s), part.m, part.r, q));
    }
    std::vector<float> p(part.n * part.r);
    GRADCOMP_TRY(matmul_mq(seg, part.n, part.m, q, part.r, p));
    GRADCOMP_TRY(orthogonalize(p, part.n, part.r, desc.eps));
    GRADCOMP_TRY(matmul_mtp(seg, part.n, part.m, p, part.r, q));
    if (desc.nonfinite == NonfinitePolicy::kError) {
      // Finite input can still overflow f32 in M^T P^ (|M| near FLT_MAX): refuse to send Inf.
      for (std::size_t i = 0; i < q.size(); ++i) {
        if (!std::isfinite(q[i])) {
          return make_status(StatusCode::kNonFinite, "powersgd: Q of segment ", s, " [", i,
                             "] = ", q[i], " overflows f32 (nonfinite=error)");
        }
      }
    }
    floats.insert(floats.end(), p.begin(), p.end());
    floats.insert(floats.end(), q.begin(), q.end());
    new_q[s] = std::move(q);
  }

  std::vector<std::uint8_t> out;
  GRADCOMP_TRY(new_payload(desc, ctx, parts.size(), 0, 4 * floats.size(), out));
  std::uint8_t* body = body_of(out);
  for (std::size_t i = 0; i < floats.size(); ++i) store_f32(body + 4 * i, floats[i]);

  if (state) {  // commit the warm start: the Q that was sent
    if (state->q.empty()) state->q.resize(parts.size());
    for (std::size_t s = 0; s < parts.size(); ++s)
      if (parts[s].matrix) state->q[s] = std::move(new_q[s]);
  }
  payload.swap(out);
  return Status::success();
}

Status powersgd_decompress(const CompressorDesc& desc, const CompressContext&,
                           const WireHeader& header, Span<const std::uint8_t> body,
                           Span<float> out) {
  const std::vector<Part> parts = parts_of(desc);
  GRADCOMP_CHECK_PAYLOAD(header.flags == 0, "flags 0x", std::hex, int(header.flags),
                         " set; powersgd payloads have no flags");
  GRADCOMP_CHECK_PAYLOAD(header.count == parts.size(), "count ", header.count, " but the layout ",
                         "has ", parts.size(), " tensor segments");
  const std::uint64_t floats = body_floats(parts);
  GRADCOMP_CHECK_PAYLOAD(body.size() == 4 * floats, "body is ", body.size(), " bytes, expected ",
                         4 * floats, " (", floats, " f32 of P^, Q and vectors)");
  const bool finite_only = desc.nonfinite == NonfinitePolicy::kError;
  std::uint64_t pos = 0;  // in floats
  // Reads `count` floats, checking them; |x| <= 1 is required of P^'s entries (unit columns).
  auto read = [&](std::uint64_t count, bool unit, std::size_t s, const char* what,
                  std::vector<float>& dst) -> Status {
    dst.resize(count);
    for (std::uint64_t i = 0; i < count; ++i, ++pos) {
      const float v = load_f32(body.data() + 4 * pos);
      GRADCOMP_CHECK_PAYLOAD(!finite_only || std::isfinite(v), "segment ", s, " ", what, "[", i,
                             "] = ", v, " is not finite (nonfinite=error)");
      GRADCOMP_CHECK_PAYLOAD(!unit || !(std::fabs(v) > 1.0f), "segment ", s, " ", what, "[", i,
                             "] = ", v, " has |x| > 1: not an orthonormalised column");
      dst[i] = v;
    }
    return Status::success();
  };
  std::vector<float> p, q, v;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    const Part& part = parts[s];
    if (!part.matrix) {
      GRADCOMP_TRY(read(part.n, false, s, "value", v));
      std::copy(v.begin(), v.end(), out.begin() + part.offset);
      continue;
    }
    GRADCOMP_TRY(read(part.n * part.r, true, s, "P^", p));
    GRADCOMP_TRY(read(part.m * part.r, false, s, "Q", q));
    Status st = matmul_pqt(p, part.n, q, part.m, part.r, out.subspan(part.offset, part.n * part.m));
    if (!st.ok()) return make_status(StatusCode::kInternal, st.message());
  }
  return Status::success();
}

}  // namespace detail
}  // namespace gradcomp::ref
