// Internals of the distributed optimizer (collectives/optimizer/): the rank-level collective
// helpers every engine uses, the compute adapter over the kernel registry, the state
// serialisation, and the base class with save/restore. Not installed.
//
// Agreement rule: every local step that can fail (a check, a compressor, a decoder) is followed
// by RankComm::agree before the next collective, so an error on one rank reaches every rank
// before anyone waits in a collective the failing rank will not enter (no hang), and before any
// state is committed (no partial step).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "gradcomp/coll/compressed.hpp"
#include "gradcomp/coll/distributed_optimizer.hpp"
#include "gradcomp/communicator.hpp"
#include "gradcomp/compress_context.hpp"
#include "gradcomp/compressor.hpp"
#include "gradcomp/kernels/registry.hpp"
#include "gradcomp/preset.hpp"

namespace gradcomp::coll::detail {

using Vec = std::vector<float>;

inline float to_f32(double v) { return static_cast<float>(v); }

std::uint64_t fnv1a64_bytes(const void* data, std::uint64_t bytes,
                            std::uint64_t h = 1469598103934665603ull);

// Collectives of one rank, in the reduction order of `mode`.
class RankComm {
 public:
  RankComm(Communicator& comm, ReductionMode mode) : comm_(comm), mode_(mode) {}
  std::uint32_t rank() const { return comm_.rank(); }
  std::uint32_t size() const { return comm_.size(); }
  ReductionMode mode() const { return mode_; }
  Communicator& comm() { return comm_; }

  // Collective: ok on every rank iff `local` is ok on every rank. A failing rank gets its own
  // status back; the others get the largest failing code, naming the (highest) failing rank.
  Status agree(const Status& local, const std::string& what);

  // Every rank's payload (variable sizes) on every rank, in rank order. For the exchanges that
  // are not a mean (async model drifts, the parameter server's broadcast), see dist_sync.cpp.
  // wire (optional) gets this rank's data bytes: sent = its payload, received = the others'.
  Status allgather_payloads(const std::vector<std::uint8_t>& mine,
                            std::vector<std::vector<std::uint8_t>>& all, CollStats* wire);

  // Element-wise max of f32 values over ranks (exact in any order). Deterministic mode gathers
  // the rows (so every data exchange of that mode is an allgather, docs/distributed.md).
  Status max_f32(Vec& values, CollStats* wire);

 private:
  Communicator& comm_;
  ReductionMode mode_;
};

// Compress / decompress through the implementation picked by name from the registry.
class Compute {
 public:
  explicit Compute(std::string name) : name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  // Whether the chosen implementation can run desc (kUnimplemented with the registry's reason).
  Status check(const CompressorDesc& desc) const;
  Status compress(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                  std::vector<std::uint8_t>& payload) const;
  Status decompress(const CompressorDesc& desc, const CompressContext& ctx,
                    Span<const std::uint8_t> payload, Vec& out) const;
  // q = D(C(in)), payload kept: the reference's compress_roundtrip.
  Status roundtrip(const CompressorDesc& desc, const CompressContext& ctx, Span<const float> in,
                   Vec& q, std::vector<std::uint8_t>& payload) const;

 private:
  std::string name_;
};

// The context of a compression at `step` by `rank` (the reference's step_context).
inline CompressContext step_context(std::uint32_t step, std::uint32_t rank,
                                    std::uint32_t tensor_id = 0) {
  CompressContext ctx;
  ctx.step = step;
  ctx.tensor_id = tensor_id;
  ctx.rank = rank;
  return ctx;
}

// Little-endian state serialisation.
class Writer {
 public:
  void u32(std::uint32_t v) { raw(&v, sizeof v); }
  void u64(std::uint64_t v) { raw(&v, sizeof v); }
  void f64(double v) { raw(&v, sizeof v); }
  void vec(const Vec& v) {
    u64(v.size());
    raw(v.data(), v.size() * sizeof(float));
  }
  void raw(const void* p, std::uint64_t bytes) {
    const auto* b = static_cast<const std::uint8_t*>(p);
    out.insert(out.end(), b, b + bytes);
  }
  std::vector<std::uint8_t> out;
};

class Reader {
 public:
  explicit Reader(Span<const std::uint8_t> in) : in_(in) {}
  Status u32(std::uint32_t& v) { return raw(&v, sizeof v); }
  Status u64(std::uint64_t& v) { return raw(&v, sizeof v); }
  Status f64(double& v) { return raw(&v, sizeof v); }
  // A vector that must hold `expected` elements (or be empty when allow_empty).
  Status vec(Vec& v, std::uint64_t expected, bool allow_empty, const char* field);
  Status raw(void* p, std::uint64_t bytes);
  std::uint64_t left() const { return in_.size() - at_; }

 private:
  Span<const std::uint8_t> in_;
  std::uint64_t at_ = 0;
};

// options.algorithm resolved for one exchange of `desc` messages over `ranks` ranks (the break-even
// rule of compressed.hpp on the nominal payload size ref::payload_bytes(desc), identical on every
// rank). Refuses an algorithm whose result would differ from the simulator's.
Result<Algorithm> exchange_algorithm(const std::string& name, const CompressorDesc& desc,
                                     std::uint32_t ranks, Reduction reduction);

// Checks options.algorithm against every exchange a configuration makes (create()).
Status check_algorithm(const PipelineConfig& c, const std::string& name, std::uint32_t ranks);

// StepStats counts data bytes on the wire; agreement / preamble traffic is control.
inline void add_wire(StepStats& st, const CollStats& cs) {
  st.bytes_up += cs.bytes_sent;
  st.bytes_down += cs.bytes_received;
}

// What create() resolved, handed to an engine.
struct Setup {
  PipelineConfig config;
  std::uint64_t n = 0;
  std::uint64_t hash = 0;  // of preset, n, shapes, x0 and options (identical on every rank)
  DistributedOptions options;
};

// Shared part of every engine: identity, timing, save/restore framing.
class DistBase : public DistributedOptimizer {
 public:
  DistBase(const Setup& setup, Communicator& comm)
      : setup_(setup), rc_(comm, setup.options.mode), compute_(setup.options.compute) {}
  const PipelineConfig& config() const override { return setup_.config; }
  std::uint64_t size() const override { return setup_.n; }
  Status save(std::vector<std::uint8_t>& state) const override;
  Status restore(Span<const std::uint8_t> state) override;

 protected:
  virtual void write_state(Writer& w) const = 0;
  // Reads into a staging copy; commit_staged() makes it the state.
  virtual Status read_state(Reader& r) = 0;
  virtual void commit_staged() = 0;

  const char* name() const { return preset_name(setup_.config.preset); }
  std::uint32_t rank() const { return rc_.rank(); }
  std::uint32_t workers() const { return rc_.size(); }
  // Local gradient and lr checks (sizes, NaN/Inf), the reference's messages.
  Status check_local(const StepInput& in, Span<const float> grad, bool lr_nonnegative) const;
  CollectiveOptions coll_options() const;
  // The registry implementation the collectives run desc with (options.compute).
  Result<const CompressorImpl*> impl_for(const CompressorDesc& desc) const;
  // out = mean over ranks of local through dense_allreduce_mean (deterministic: rank order in
  // double, the reference's mean_rank_order bit for bit); wire bytes into st.
  Status dense_mean(const Vec& local, Vec& out, StepStats& st);
  // out = mean over ranks of D(payload_r) through the compressed collective `a` (kDense: the
  // dense mean of `decoded`, this rank's D(payload), which is the same mean for any compressor).
  Status message_mean(Algorithm a, const CompressorDesc& desc, const CompressContext& ctx,
                      const std::vector<std::uint8_t>& payload, const Vec& decoded, Vec& out,
                      StepStats& st);

  Setup setup_;
  RankComm rc_;
  Compute compute_;
};

// Seconds since `start`.
inline double since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// Engines (dist_sync.cpp, dist_local.cpp).
std::unique_ptr<DistributedOptimizer> make_sync_engine(const Setup& setup, Communicator& comm,
                                                       Span<const float> x0);
std::unique_ptr<DistributedOptimizer> make_local_engine(const Setup& setup, Communicator& comm,
                                                        Span<const float> x0);

}  // namespace gradcomp::coll::detail
