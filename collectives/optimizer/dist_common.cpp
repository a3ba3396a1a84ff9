// Rank-level collectives, the compute adapter and the save/restore framing of the distributed
// optimizer (dist_common.hpp).
#include "dist_common.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>

#include "gradcomp/ref/compress.hpp"

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

Status RankComm::allgather_payloads(const std::vector<std::uint8_t>& mine,
                                    std::vector<std::vector<std::uint8_t>>& all, CollStats* wire) {
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
  if (wire) {
    wire->bytes_sent += my_size;
    wire->bytes_received += total - my_size;
    wire->control_bytes += sizeof my_size * p;
    ++wire->calls;
  }
  all.assign(p, {});
  for (std::uint32_t r = 0; r < p; ++r)
    all[r].assign(buf.begin() + static_cast<std::ptrdiff_t>(offsets[r]),
                  buf.begin() + static_cast<std::ptrdiff_t>(offsets[r] + sizes[r]));
  return Status::success();
}

Status RankComm::max_f32(Vec& values, CollStats* wire) {
  const std::uint64_t m = values.size();
  const std::uint32_t p = comm_.size();
  if (wire) ++wire->calls;
  if (mode_ == ReductionMode::kFast) {
    GRADCOMP_TRY(comm_.allreduce(values.data(), values.data(), m, DType::kF32, ReduceOp::kMax));
    if (wire) {
      wire->bytes_sent += 4 * m;
      wire->bytes_received += 4 * m;
    }
    return Status::success();
  }
  Vec rows(m * p);
  GRADCOMP_TRY(comm_.allgather(values.data(), rows.data(), m * sizeof(float)));
  for (std::uint32_t r = 0; r < p; ++r)
    for (std::uint64_t j = 0; j < m; ++j) values[j] = std::max(values[j], rows[r * m + j]);
  if (wire) {
    wire->bytes_sent += 4 * m;
    wire->bytes_received += 4 * m * (p - 1);
  }
  return Status::success();
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

CollectiveOptions DistBase::coll_options() const {
  CollectiveOptions o;
  o.mode = setup_.options.mode;
  o.majority_tie_plus = setup_.config.majority_tie == MajorityTie::kPlus;
  return o;
}

Result<const CompressorImpl*> DistBase::impl_for(const CompressorDesc& desc) const {
  return select_impl(desc, compute_.name());
}

Status DistBase::dense_mean(const Vec& local, Vec& out, StepStats& st) {
  const auto t0 = std::chrono::steady_clock::now();
  CollStats cs;
  Vec result(local.size());
  GRADCOMP_TRY(dense_allreduce_mean(rc_.comm(), Span<const float>(local), Span<float>(result),
                                    coll_options(), &cs));
  out.swap(result);
  add_wire(st, cs);
  st.seconds_communicate += since(t0);
  return Status::success();
}

Status DistBase::message_mean(Algorithm a, const CompressorDesc& desc, const CompressContext& ctx,
                              const std::vector<std::uint8_t>& payload, const Vec& decoded,
                              Vec& out, StepStats& st) {
  if (a == Algorithm::kDense) return dense_mean(decoded, out, st);
  const auto t0 = std::chrono::steady_clock::now();
  auto impl = impl_for(desc);
  if (!impl.ok()) return impl.status();  // same on every rank: create() checked it
  CollStats cs;
  Vec result(desc.n);
  const Span<const std::uint8_t> msg(payload);
  switch (a) {
    case Algorithm::kAllgather:
      GRADCOMP_TRY(allgather_allreduce(rc_.comm(), *impl.value(), desc, ctx, msg,
                                       Span<float>(result), coll_options(), &cs));
      break;
    case Algorithm::kSharedSupport:
      GRADCOMP_TRY(shared_support_allreduce(rc_.comm(), *impl.value(), desc, ctx, msg,
                                            Span<float>(result), coll_options(), &cs));
      break;
    default:
      return make_status(StatusCode::kInternal, name(), ": ", algorithm_name(a),
                         " is not a mean of messages");
  }
  out.swap(result);
  add_wire(st, cs);
  st.seconds_communicate += since(t0);
  return Status::success();
}

// ---- algorithm override ------------------------------------------------------------------------

Result<Algorithm> exchange_algorithm(const std::string& name, const CompressorDesc& desc,
                                     std::uint32_t ranks, Reduction reduction) {
  return resolve_algorithm(name, desc, ref::payload_bytes(desc), ranks, reduction);
}

namespace {
Status only(const std::string& name, std::initializer_list<const char*> allowed, const char* preset,
            const char* why) {
  GRADCOMP_TRY(parse_algorithm(name).status());
  std::string list;
  for (const char* a : allowed) {
    if (name == a) return Status::success();
    list += std::string(list.empty() ? "" : ", ") + a;
  }
  return make_status(StatusCode::kInvalidArgument, preset, ": algorithm '", name,
                     "' does not apply (", why, "; use ", list, ")");
}
}  // namespace

Status check_algorithm(const PipelineConfig& c, const std::string& name, std::uint32_t ranks) {
  const char* preset = preset_name(c.preset);
  auto with = [&](const CompressorDesc& d, Reduction r) -> Status {
    auto a = exchange_algorithm(name, d, ranks, r);
    if (!a.ok())
      return make_status(a.status().code(), preset, ": algorithm '", name,
                         "': ", a.status().message());
    return Status::success();
  };
  switch (c.family) {
    case Family::kSynchronous:
      if (c.aggregation == Aggregation::kPowerSgd)
        return only(name, {"auto", "dense"}, preset, "PowerSGD averages dense P and Q factors");
      if (c.aggregation == Aggregation::kMajority) return with(c.up, Reduction::kMajority);
      if (c.two_way && c.server == ServerTopology::kChunked) return with(c.up, Reduction::kTwoWay);
      if (c.two_way && name == "two-phase")
        return make_status(StatusCode::kInvalidArgument, preset,
                           ": algorithm 'two-phase' needs server=chunked (server=ps compresses on "
                           "rank 0 after the workers' mean)");
      GRADCOMP_TRY(with(c.up, Reduction::kMean));
      for (double density : c.warmup) {
        CompressorDesc d = c.up;
        d.density = density;
        d.k = -1;
        GRADCOMP_TRY(with(d, Reduction::kMean));
      }
      return Status::success();
    case Family::kLocalSteps:
      if (c.async)
        return only(name, {"auto", "allgather"}, preset,
                    "asynchronous drifts are applied one message at a time");
      return with(c.up, Reduction::kMean);
    case Family::kPartialAvg:
      return only(name, {"auto", "shared-support", "dense"}, preset,
                  "the block mean moves the shared block's values only");
    case Family::kDetached: return with(c.up, Reduction::kMean);
  }
  return Status::success();
}

}  // namespace gradcomp::coll::detail
