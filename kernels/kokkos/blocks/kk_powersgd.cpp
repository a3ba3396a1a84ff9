// powersgd on Kokkos (docs/compressors/powersgd.md, reference/ref_powersgd.cpp): per matrix
// segment P = M Q, P^ = orthogonalize(P) (Gram-Schmidt), Q = M^T P^; decode P^ Q^T.
//
// Every product entry is a double accumulation over the inner index in increasing order,
// rounded once to f32, exactly like the reference's strided_product; the work is split over
// output rows (M Q, P Q^T) or column tiles of M (M^T P, each tile keeps its accumulators), never
// over the inner index. The Gram-Schmidt norms and dots are parallel_reduce sums: on Serial they
// run in index order, so kk:serial is bit-identical to the reference on every fill. A parallel
// backend would reorder those sums (see docs/tolerances.md, powersgd).
#include <algorithm>
#include <cmath>

#include "kk_blocks.hpp"

namespace gradcomp::kk::blocks {
namespace {

using namespace gradcomp::kk::sel;

struct Part {
  std::uint64_t offset = 0;
  bool matrix = false;
  std::uint64_t n = 0, m = 0, r = 0;
  std::uint64_t floats() const { return matrix ? r * (n + m) : n; }
};

std::vector<Part> parts_of(const CompressorDesc& desc) {
  std::vector<Part> parts;
  for (const Segment& seg : tensor_segments(desc)) {
    Part p;
    p.offset = seg.offset;
    p.matrix = seg.shape.size() >= 2;
    if (p.matrix) {
      p.n = seg.shape[0];
      p.m = seg.size / p.n;
      p.r = std::min<std::uint64_t>({p.n, p.m, desc.rank});
    } else {
      p.n = seg.size;
    }
    parts.push_back(p);
  }
  return parts;
}

std::uint64_t total_floats(const std::vector<Part>& parts) {
  std::uint64_t t = 0;
  for (const Part& p : parts) t += p.floats();
  return t;
}

std::uint64_t powersgd_payload_bytes(const CompressorDesc& desc) {
  return kHeaderBytes + 4 * total_floats(parts_of(desc));
}

// Accumulators per work item of the row products (r' is usually 1..4; larger ranks loop).
constexpr std::uint64_t kRBlock = 8;

// P (n x r) = M (n x m) Q (m x r): one row of P per work item.
void product_mq(const float* mat, std::uint64_t n, std::uint64_t m, const float* q, std::uint64_t r,
                float* p) {
  Kokkos::parallel_for(
      "gradcomp::kk::powersgd_mq", Range<>(0, n), KOKKOS_LAMBDA(const std::uint64_t i) {
        const float* row = mat + i * m;
        for (std::uint64_t c0 = 0; c0 < r; c0 += kRBlock) {
          const std::uint64_t cn = r - c0 < kRBlock ? r - c0 : kRBlock;
          double acc[kRBlock] = {0, 0, 0, 0, 0, 0, 0, 0};
          for (std::uint64_t j = 0; j < m; ++j) {
            const double x = static_cast<double>(row[j]);
            for (std::uint64_t c = 0; c < cn; ++c)
              acc[c] += x * static_cast<double>(q[j * r + c0 + c]);
          }
          for (std::uint64_t c = 0; c < cn; ++c) p[i * r + c0 + c] = static_cast<float>(acc[c]);
        }
      });
}

// Q (m x r) = M^T P: a tile of columns of M per work item, its m_tile x r accumulators updated
// row by row (so each Q entry still sums over i in increasing order).
void product_mtp(const float* mat, std::uint64_t n, std::uint64_t m, const float* p,
                 std::uint64_t r, float* q) {
  // About 16 KiB of double accumulators per tile.
  const std::uint64_t tile = std::max<std::uint64_t>(1, 2048 / r);
  const std::uint64_t tiles = (m + tile - 1) / tile;
  std::vector<double> acc_store(tiles * tile * r, 0.0);
  double* accs = acc_store.data();
  Kokkos::parallel_for(
      "gradcomp::kk::powersgd_mtp", Range<>(0, tiles), KOKKOS_LAMBDA(const std::uint64_t tt) {
        const std::uint64_t j0 = tt * tile;
        const std::uint64_t jn = m - j0 < tile ? m - j0 : tile;
        double* acc = accs + tt * tile * r;
        for (std::uint64_t i = 0; i < n; ++i) {
          const float* row = mat + i * m + j0;
          const float* prow = p + i * r;
          if (r == 1) {
            const double pc = static_cast<double>(prow[0]);
            for (std::uint64_t j = 0; j < jn; ++j) acc[j] += static_cast<double>(row[j]) * pc;
          } else {
            for (std::uint64_t j = 0; j < jn; ++j) {
              const double x = static_cast<double>(row[j]);
              for (std::uint64_t c = 0; c < r; ++c)
                acc[j * r + c] += x * static_cast<double>(prow[c]);
            }
          }
        }
        for (std::uint64_t k = 0; k < jn * r; ++k) q[j0 * r + k] = static_cast<float>(acc[k]);
      });
}

// Gram-Schmidt on the columns of P (n x r), the reference's arithmetic.
void orthogonalize(float* p, std::uint64_t n, std::uint64_t r, double eps) {
  for (std::uint64_t c = 0; c < r; ++c) {
    double sq = 0.0;
    Kokkos::parallel_reduce(
        "gradcomp::kk::powersgd_norm", Range<>(0, n),
        KOKKOS_LAMBDA(const std::uint64_t i, double& s) {
          s += static_cast<double>(p[i * r + c]) * p[i * r + c];
        },
        sq);
    const double denom = ::sqrt(sq) + eps;
    Kokkos::parallel_for(
        "gradcomp::kk::powersgd_scale", Range<>(0, n), KOKKOS_LAMBDA(const std::uint64_t i) {
          p[i * r + c] = denom > 0.0 ? static_cast<float>(p[i * r + c] / denom) : 0.0f;
        });
    for (std::uint64_t later = c + 1; later < r; ++later) {
      double dot = 0.0;
      Kokkos::parallel_reduce(
          "gradcomp::kk::powersgd_dot", Range<>(0, n),
          KOKKOS_LAMBDA(const std::uint64_t i, double& s) {
            s += static_cast<double>(p[i * r + c]) * p[i * r + later];
          },
          dot);
      Kokkos::parallel_for(
          "gradcomp::kk::powersgd_project", Range<>(0, n), KOKKOS_LAMBDA(const std::uint64_t i) {
            p[i * r + later] = static_cast<float>(p[i * r + later] - dot * p[i * r + c]);
          });
    }
  }
}

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
                       " has ", q.size(), " entries, expected ", parts[s].m, " x ", parts[s].r);
    if (desc.nonfinite == NonfinitePolicy::kError) {
      const std::uint64_t bad = first_nonfinite(UView<const float>(q.data(), q.size()));
      if (bad != kNone)
        return make_status(StatusCode::kNonFinite, "powersgd: warm-start Q of segment ", s, " [",
                           bad, "] = ", q[bad], " is not finite (nonfinite=error)");
    }
  }
  return Status::success();
}

Status powersgd_compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) {
  ensure_initialized();
  GRADCOMP_TRY(check_compress_args(desc, in));
  const bool check = desc.nonfinite == NonfinitePolicy::kError;
  if (check) {
    const std::uint64_t bad = first_nonfinite(view_of(in));
    if (bad != kNone) return nonfinite_status(desc, in, bad);
  }
  const std::vector<Part> parts = parts_of(desc);
  PowerSgdState* state = desc.warm_start ? ctx.powersgd : nullptr;
  if (state) GRADCOMP_TRY(check_state(desc, parts, *state));
  std::vector<std::uint8_t> out;
  GRADCOMP_TRY(new_payload(desc, ctx, parts.size(), 0, 4 * total_floats(parts), out));
  float* body = reinterpret_cast<float*>(out.data() + kHeaderBytes);
  std::vector<std::vector<float>> new_q(parts.size());
  std::uint64_t pos = 0;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    const Part& part = parts[s];
    const float* seg = in.data() + part.offset;
    if (!part.matrix) {
      gather_runs({Run{part.offset, pos, part.n}}, view_of(in), body);
      pos += part.n;
      continue;
    }
    std::vector<float> q;
    if (state && !state->q.empty() && !state->q[s].empty()) {
      q = state->q[s];
    } else {
      GRADCOMP_CHECK_ARG(part.m * part.r <= 0xFFFFFFFFull, "powersgd: Q of ", part.m, " x ", part.r,
                         " does not fit the 32-bit element index of the draw");
      q.resize(part.m * part.r);
      const RngStream rng(desc.seed, RngPurpose::kPowerSgdInit, ctx.step, ctx.tensor_id,
                          kSharedRank);
      const std::uint64_t base = static_cast<std::uint64_t>(s) << 32;
      float* qd = q.data();
      Kokkos::parallel_for(
          "gradcomp::kk::powersgd_init_q", Range<>(0, q.size()),
          KOKKOS_LAMBDA(const std::uint64_t i) {
            qd[i] = static_cast<float>(rng.normal(base | i, 0));
          });
    }
    float* p = body + pos;  // P^ is computed in place in the payload
    product_mq(seg, part.n, part.m, q.data(), part.r, p);
    orthogonalize(p, part.n, part.r, desc.eps);
    float* qout = p + part.n * part.r;
    product_mtp(seg, part.n, part.m, p, part.r, qout);
    if (check) {
      const std::uint64_t bad = first_nonfinite(UView<const float>(qout, part.m * part.r));
      if (bad != kNone)
        return make_status(StatusCode::kNonFinite, "powersgd: Q of segment ", s, " [", bad,
                           "] = ", qout[bad], " overflows f32 (nonfinite=error)");
    }
    if (state) new_q[s].assign(qout, qout + part.m * part.r);
    pos += part.floats();
  }
  if (state) {  // commit the warm start only after success
    if (state->q.empty()) state->q.resize(parts.size());
    for (std::size_t s = 0; s < parts.size(); ++s)
      if (parts[s].matrix) state->q[s] = std::move(new_q[s]);
  }
  payload.swap(out);
  return Status::success();
}

// out rows [0, n) of P^ Q^T (n x m), each entry summed over c in increasing order.
template <class Put>
void product_pqt(const float* p, std::uint64_t n, const float* q, std::uint64_t m, std::uint64_t r,
                 Put put) {
  Kokkos::parallel_for(
      "gradcomp::kk::powersgd_pqt", Range<>(0, n), KOKKOS_LAMBDA(const std::uint64_t i) {
        const float* prow = p + i * r;
        if (r == 1) {  // the default rank: one product per entry, a loop that vectorises
          const double pi = static_cast<double>(prow[0]);
          for (std::uint64_t j = 0; j < m; ++j)
            put(i * m + j, static_cast<float>(0.0 + pi * static_cast<double>(q[j])));
          return;
        }
        for (std::uint64_t j = 0; j < m; ++j) {
          double acc = 0.0;
          for (std::uint64_t c = 0; c < r; ++c)
            acc += static_cast<double>(prow[c]) * static_cast<double>(q[j * r + c]);
          put(i * m + j, static_cast<float>(acc));
        }
      });
}

template <bool kAccumulate>
Status powersgd_decode(const CompressorDesc& desc, const CompressContext& ctx,
                       Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  ensure_initialized();
  WireHeader h;
  GRADCOMP_TRY(check_decompress_args(desc, ctx, payload, out, h));
  auto fail = [&](const auto&... args) {
    return make_status(StatusCode::kCorruptPayload, "powersgd: ", args...);
  };
  const std::vector<Part> parts = parts_of(desc);
  if (h.flags != 0) return fail("flags set; powersgd payloads have no flags");
  if (h.count != parts.size())
    return fail("count ", h.count, " but the layout has ", parts.size(), " tensor segments");
  const std::uint64_t floats = total_floats(parts);
  if (h.body_bytes != 4 * floats)
    return fail("body is ", h.body_bytes, " bytes, expected ", 4 * floats);
  const float* body = reinterpret_cast<const float*>(payload.data() + kHeaderBytes);
  const bool finite_only = desc.nonfinite == NonfinitePolicy::kError;
  if (finite_only) {
    const std::uint64_t bad = first_nonfinite_value(body, floats);
    if (bad != kNone)
      return fail("body value [", bad, "] = ", body[bad], " is not finite (nonfinite=error)");
  }
  // |P^| <= 1 (unit columns); a decoded value can still overflow f32 when |Q| is huge, so with
  // nonfinite=error a matrix whose bound r' max|Q| may exceed FLT_MAX is decoded into scratch
  // and checked before out is touched.
  bool may_overflow = false;
  std::uint64_t pos = 0;
  for (std::size_t s = 0; s < parts.size(); ++s) {
    const Part& part = parts[s];
    if (part.matrix) {
      const std::uint64_t np = part.n * part.r;
      std::uint64_t big = kNone;
      const float* pp = body + pos;
      Kokkos::parallel_reduce(
          "gradcomp::kk::powersgd_check_p", Range<>(0, np),
          KOKKOS_LAMBDA(const std::uint64_t i, std::uint64_t& mn) {
            if (bits_float(float_bits(pp[i]) & 0x7FFFFFFFu) > 1.0f && i < mn) mn = i;
          },
          Kokkos::Min<std::uint64_t>(big));
      if (big != kNone)
        return fail("segment ", s, " P^[", big, "] = ", pp[big],
                    " has |x| > 1: not an orthonormalised column");
      float qmax = 0.0f;
      const float* qq = pp + np;
      Kokkos::parallel_reduce(
          "gradcomp::kk::powersgd_qmax", Range<>(0, part.m * part.r),
          KOKKOS_LAMBDA(const std::uint64_t i, float& mx) {
            const float a = bits_float(float_bits(qq[i]) & 0x7FFFFFFFu);
            if (a > mx) mx = a;
          },
          Kokkos::Max<float>(qmax));
      if (static_cast<double>(qmax) * static_cast<double>(part.r) >= 3.4e38) may_overflow = true;
    }
    pos += part.floats();
  }
  std::vector<float> scratch;
  const bool staged = finite_only && may_overflow;
  if (staged) scratch.assign(desc.n, 0.0f);
  float* dst = staged ? scratch.data() : out.data();
  const bool acc_direct = kAccumulate && !staged;
  const double a = static_cast<double>(alpha);
  pos = 0;
  for (const Part& part : parts) {
    float* o = dst + part.offset;
    if (!part.matrix) {
      const float* v = body + pos;
      Kokkos::parallel_for(
          "gradcomp::kk::powersgd_vector", Range<>(0, part.n),
          KOKKOS_LAMBDA(const std::uint64_t i) {
            o[i] =
                acc_direct
                    ? static_cast<float>(static_cast<double>(o[i]) + a * static_cast<double>(v[i]))
                    : v[i];
          });
    } else {
      const float* pp = body + pos;
      product_pqt(pp, part.n, pp + part.n * part.r, part.m, part.r, [=](std::uint64_t k, float d) {
        o[k] = acc_direct
                   ? static_cast<float>(static_cast<double>(o[k]) + a * static_cast<double>(d))
                   : d;
      });
    }
    pos += part.floats();
  }
  if (staged) {
    const std::uint64_t bad = first_nonfinite(UView<const float>(scratch.data(), desc.n));
    if (bad != kNone)
      return fail("decoded element [", bad, "] = ", scratch[bad],
                  " is not finite (nonfinite=error)");
    apply_dense(UView<const float>(scratch.data(), desc.n), kAccumulate, alpha, view_of(out));
  }
  return Status::success();
}

Status powersgd_decompress(const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const std::uint8_t> payload, Span<float> out) {
  return powersgd_decode<false>(desc, ctx, payload, 1.0f, out);
}

}  // namespace

void register_powersgd(KkTable& table) {
  KkOps o;
  o.ops.payload_bytes = powersgd_payload_bytes;
  o.ops.compress = powersgd_compress;
  o.ops.decompress = powersgd_decompress;
  o.ops.decompress_accumulate = powersgd_decode<true>;
  table[CompressorKind::kPowerSgd] = o;
}

}  // namespace gradcomp::kk::blocks
