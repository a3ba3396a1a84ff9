// Rank-level collectives, the compute adapter and the save/restore framing of the distributed
// optimizer (dist_common.hpp).
#include "dist_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace gradcomp::coll::detail {

std::uint64_t fnv1a64_bytes(const void* data, std::uint64_t bytes, std::uint64_t h) {
  const auto* p = static_cast<const std::uint8_t*>(data);
  for (std::uint64_t i = 0; i < bytes; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return h;
}

// ---- RankComm ----------------------------------------------------------------------------------

Status RankComm::agree(const Status& local, const std::string& what) {
  std::uint32_t v[2] = {static_cast<std::uint32_t>(local.code()),
                        local.ok() ? 0u : comm_.rank() + 1};
  GRADCOMP_TRY(comm_.allreduce(v, v, 2, DType::kU32, ReduceOp::kMax));
  if (v[0] == 0) return Status::success();
  if (!local.ok()) return local;
  return make_status(static_cast<StatusCode>(v[0]), what, ": rank ", v[1] - 1, " failed (",
                     status_code_name(static_cast<StatusCode>(v[0])),
                     "); every rank returns the error and no state was changed");
}

Status RankComm::mean(const Vec& local, Vec& out, bool ordered) {
  const std::uint64_t n = local.size();
  const std::uint32_t p = comm_.size();
  out.assign(n, 0.0f);
  if (mode_ == ReductionMode::kFast && !ordered) {
    Vec sum(n);
    GRADCOMP_TRY(comm_.allreduce(local.data(), sum.data(), n, DType::kF32, ReduceOp::kSum));
    for (std::uint64_t j = 0; j < n; ++j)
      out[j] = to_f32(static_cast<double>(sum[j]) / static_cast<double>(p));
    return Status::success();
  }
  Vec rows(n * p);
  GRADCOMP_TRY(comm_.allgather(local.data(), rows.data(), n * sizeof(float)));
  for (std::uint64_t j = 0; j < n; ++j) {
    double sum = 0.0;
    for (std::uint32_t r = 0; r < p; ++r) sum += static_cast<double>(rows[r * n + j]);
    out[j] = to_f32(sum / static_cast<double>(p));
  }
  return Status::success();
}

Status RankComm::allgather_payloads(const std::vector<std::uint8_t>& mine,
                                    std::vector<std::vector<std::uint8_t>>& all) {
  const std::uint32_t p = comm_.size();
  std::uint64_t my_size = mine.size();
  std::vector<std::uint64_t> sizes(p);
  GRADCOMP_TRY(comm_.allgather(&my_size, sizes.data(), sizeof my_size));
  std::vector<std::uint64_t> offsets(p, 0);
  std::uint64_t total = 0;
  for (std::uint32_t r = 0; r < p; ++r) {
    offsets[r] = total;
    total += sizes[r];
  }
  std::vector<std::uint8_t> buf(total);
  GRADCOMP_TRY(comm_.allgatherv(mine.data(), my_size, buf.data(), Span<const std::uint64_t>(sizes),
                                Span<const std::uint64_t>(offsets)));
  all.assign(p, {});
  for (std::uint32_t r = 0; r < p; ++r)
    all[r].assign(buf.begin() + static_cast<std::ptrdiff_t>(offsets[r]),
                  buf.begin() + static_cast<std::ptrdiff_t>(offsets[r] + sizes[r]));
  return Status::success();
}

Status RankComm::max_f32(Vec& values) {
  return comm_.allreduce(values.data(), values.data(), values.size(), DType::kF32, ReduceOp::kMax);
}

// ---- Compute -----------------------------------------------------------------------------------

Status Compute::check(const CompressorDesc& desc) const {
  auto impl = select_impl(desc, name_);
  return impl.ok() ? Status::success() : impl.status();
}

Status Compute::compress(const CompressorDesc& desc, const CompressContext& ctx,
                         Span<const float> in, std::vector<std::uint8_t>& payload) const {
  auto impl = select_impl(desc, name_);
  if (!impl.ok()) return impl.status();
  return impl.value()->ops(desc.kind).compress(desc, ctx, in, payload);
}

Status Compute::decompress(const CompressorDesc& desc, const CompressContext& ctx,
                           Span<const std::uint8_t> payload, Vec& out) const {
  auto impl = select_impl(desc, name_);
  if (!impl.ok()) return impl.status();
  Vec dense(desc.n);
  GRADCOMP_TRY(impl.value()->ops(desc.kind).decompress(desc, ctx, payload, Span<float>(dense)));
  out.swap(dense);
  return Status::success();
}

Status Compute::roundtrip(const CompressorDesc& desc, const CompressContext& ctx,
                          Span<const float> in, Vec& q, std::vector<std::uint8_t>& payload) const {
  std::vector<std::uint8_t> p;
  GRADCOMP_TRY(compress(desc, ctx, in, p));
  GRADCOMP_TRY(decompress(desc, ctx, Span<const std::uint8_t>(p), q));
  payload.swap(p);
  return Status::success();
}

// ---- Reader ------------------------------------------------------------------------------------

Status Reader::raw(void* p, std::uint64_t bytes) {
  GRADCOMP_CHECK_PAYLOAD(bytes <= left(), "optimizer state is truncated at byte ", at_);
  if (bytes) std::memcpy(p, in_.data() + at_, bytes);
  at_ += bytes;
  return Status::success();
}

Status Reader::vec(Vec& v, std::uint64_t expected, bool allow_empty, const char* field) {
  std::uint64_t len = 0;
  GRADCOMP_TRY(u64(len));
  GRADCOMP_CHECK_PAYLOAD(len == expected || (allow_empty && len == 0), "optimizer state field ",
                         field, " has ", len, " elements, expected ", expected);
  GRADCOMP_CHECK_PAYLOAD(len <= left() / sizeof(float), "optimizer state is truncated in ", field);
  v.resize(len);
  return raw(v.data(), len * sizeof(float));
}

// ---- DistBase ----------------------------------------------------------------------------------

namespace {
constexpr std::uint32_t kStateMagic = 0x534f4447u;  // "GDOS" little-endian
constexpr std::uint32_t kStateVersion = 1;
}  // namespace

// Layout (docs/distributed.md): magic u32, version u32, rank u32, ranks u32, n u64, config hash
// u64, body length u64, body, FNV-1a 64 of everything before it.
Status DistBase::save(std::vector<std::uint8_t>& state) const {
  Writer body;
  write_state(body);
  Writer w;
  w.u32(kStateMagic);
  w.u32(kStateVersion);
  w.u32(rank());
  w.u32(workers());
  w.u64(setup_.n);
  w.u64(setup_.hash);
  w.u64(body.out.size());
  w.raw(body.out.data(), body.out.size());
  w.u64(fnv1a64_bytes(w.out.data(), w.out.size()));
  state.swap(w.out);
  return Status::success();
}

Status DistBase::restore(Span<const std::uint8_t> state) {
  auto parse = [&]() -> Status {
    GRADCOMP_CHECK_PAYLOAD(state.size() >= 48, name(), ": optimizer state of ", state.size(),
                           " bytes is shorter than its header");
    std::uint64_t stored = 0;
    std::memcpy(&stored, state.data() + state.size() - 8, 8);
    GRADCOMP_CHECK_PAYLOAD(fnv1a64_bytes(state.data(), state.size() - 8) == stored, name(),
                           ": optimizer state checksum mismatch (corrupt or truncated)");
    Reader r(Span<const std::uint8_t>(state.data(), state.size() - 8));
    std::uint32_t magic = 0, version = 0, rk = 0, p = 0;
    std::uint64_t n = 0, hash = 0, body = 0;
    GRADCOMP_TRY(r.u32(magic));
    GRADCOMP_CHECK_PAYLOAD(magic == kStateMagic, name(), ": not a gradcomp optimizer state");
    GRADCOMP_TRY(r.u32(version));
    GRADCOMP_CHECK_ARG(version == kStateVersion, name(), ": optimizer state version ", version,
                       ", this build reads version ", kStateVersion);
    GRADCOMP_TRY(r.u32(rk));
    GRADCOMP_TRY(r.u32(p));
    GRADCOMP_TRY(r.u64(n));
    GRADCOMP_TRY(r.u64(hash));
    GRADCOMP_TRY(r.u64(body));
    GRADCOMP_CHECK_ARG(rk == rank() && p == workers(), name(), ": state of rank ", rk, " of ", p,
                       " restored on rank ", rank(), " of ", workers());
    GRADCOMP_CHECK_ARG(n == setup_.n && hash == setup_.hash, name(),
                       ": state of another preset, size, x0 or options (n = ", n, ")");
    GRADCOMP_CHECK_PAYLOAD(body == r.left(), name(), ": optimizer state body has ", r.left(),
                           " bytes, header says ", body);
    GRADCOMP_TRY(read_state(r));
    GRADCOMP_CHECK_PAYLOAD(r.left() == 0, name(), ": ", r.left(),
                           " unread bytes after the optimizer state");
    return Status::success();
  };
  // Collective: a rank whose state is bad fails every rank, so none continues alone.
  GRADCOMP_TRY(rc_.agree(parse(), std::string(name()) + " restore"));
  commit_staged();
  return Status::success();
}

Status DistBase::check_local(const StepInput& in, Span<const float> grad,
                             bool lr_nonnegative) const {
  GRADCOMP_CHECK_ARG(std::isfinite(in.lr) && (!lr_nonnegative || in.lr >= 0.0), name(),
                     ": learning rate must be finite", lr_nonnegative ? " and >= 0" : "", ", got ",
                     in.lr);
  GRADCOMP_CHECK_ARG(grad.size() == setup_.n, name(), ": rank ", rank(), " gradient has ",
                     grad.size(), " elements, the model has ", setup_.n);
  for (std::uint64_t i = 0; i < grad.size(); ++i) {
    if (!std::isfinite(grad[i])) {
      return make_status(StatusCode::kNonFinite, name(), ": rank ", rank(), " gradient[", i,
                         "] = ", grad[i], " is not finite; no state was changed");
    }
  }
  return Status::success();
}

bool DistBase::use_allreduce(bool compatible) const {
  if (setup_.options.mode != ReductionMode::kFast) return false;
  const std::string& a = setup_.options.algorithm;
  if (a == "allgather") return false;
  if (a == "dense") return true;
  return compatible;
}

}  // namespace gradcomp::coll::detail
