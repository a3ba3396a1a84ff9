// The ordered implementation list (style.md B2.5): optimized backends first, the reference last.
#include "gradcomp/kernels/registry.hpp"

#include "gradcomp/ref/compress.hpp"

#if GRADCOMP_HAVE_KOKKOS
#include "kokkos/kk_ops.hpp"
#endif
#if GRADCOMP_HAVE_CUDA
#include "gradcomp/kernels/cuda.hpp"
#endif

namespace gradcomp {
namespace {

Status ref_decompress_accumulate(const CompressorDesc& desc, const CompressContext& ctx,
                                 Span<const std::uint8_t> payload, float alpha, Span<float> out) {
  std::vector<float> dense(desc.n);
  GRADCOMP_TRY(ref::decompress(desc, ctx, payload, Span<float>(dense)));
  GRADCOMP_CHECK_ARG(out.size() == desc.n, compressor_name(desc.kind), ": output has ", out.size(),
                     " elements but n = ", desc.n);
  for (std::size_t i = 0; i < dense.size(); ++i) {
    out[i] =
        static_cast<float>(static_cast<double>(out[i]) + static_cast<double>(alpha) * dense[i]);
  }
  return Status::success();
}

CompressorOps ref_ops(CompressorKind) {
  CompressorOps ops;
  ops.payload_bytes = ref::payload_bytes;
  ops.compress = ref::compress;
  ops.decompress = ref::decompress;
  ops.decompress_accumulate = ref_decompress_accumulate;
  return ops;
}

bool ref_can_implement(const CompressorDesc& desc) { return validate(desc).ok(); }

std::vector<CompressorImpl> build_list() {
  std::vector<CompressorImpl> list;
#if GRADCOMP_HAVE_KOKKOS
  list.push_back(kk::registry_entry());
#endif
#if GRADCOMP_HAVE_CUDA
  // After the host backends: these ops take HOST spans and pay two PCIe copies per call, so for
  // host data a host kernel is preferred; GPU code calls the device API (kernels/cuda.hpp).
  // Declines everything without a device.
  list.push_back(cuda::registry_entry());
#endif
  CompressorImpl ref_impl;
  ref_impl.name = "ref:any";
  ref_impl.is_reference = true;
  ref_impl.deterministic = true;
  ref_impl.can_implement = ref_can_implement;
  ref_impl.ops = ref_ops;
  list.push_back(ref_impl);
  return list;
}

}  // namespace

const std::vector<CompressorImpl>& compressor_impls() {
  static const std::vector<CompressorImpl> list = build_list();
  return list;
}

Result<const CompressorImpl*> select_impl(const CompressorDesc& desc, std::string_view requested) {
  const auto& list = compressor_impls();
  const char* name = compressor_name(desc.kind);
  if (requested.empty() || requested == "any") {
    for (const auto& impl : list)
      if (impl.can_implement(desc)) return &impl;
    return make_status(StatusCode::kUnimplemented, name, ": no implementation can run ",
                       desc.to_string());
  }
  if (requested == "ref") requested = "ref:any";
  std::string built;
  for (const auto& impl : list) {
    built += (built.empty() ? "" : ", ") + impl.name;
    const bool match =
        impl.name == requested ||
        (requested.find(':') == std::string_view::npos &&
         impl.name.compare(0, requested.size() + 1, std::string(requested) + ":") == 0);
    if (!match) continue;
    if (!impl.can_implement(desc)) {
#if GRADCOMP_HAVE_CUDA
      // Say why a CUDA implementation declines: no device is not the same as no kernel.
      if (impl.name.rfind("cuda:", 0) == 0 && !cuda::device_status().available) {
        return make_status(StatusCode::kUnimplemented, impl.name, " cannot run ", desc.to_string(),
                           ": ", cuda::device_status().reason);
      }
#endif
      return make_status(StatusCode::kUnimplemented, impl.name, " cannot run ", desc.to_string(),
                         " (no fallback to the reference: ask for ref:any explicitly)");
    }
    return &impl;
  }
  return make_status(StatusCode::kUnimplemented, "implementation '", requested,
                     "' is not built here (built: ", built, ")");
}

}  // namespace gradcomp
