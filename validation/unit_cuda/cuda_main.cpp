// main() of gradcomp_unit_cuda. With a CUDA device: every test. Without one: only the
// CudaNoDevice suite (the backend must decline, and say why), then exit 77 so that CTest reports
// the GPU suites as skipped, never as passed. `--probe`: exit 0 with a device, 77 without
// (used by the gradcomp-validate CTests of cuda:native).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "gradcomp/kernels/cuda.hpp"

int main(int argc, char** argv) {
  const gradcomp::cuda::DeviceStatus& dev = gradcomp::cuda::device_status();
  if (argc > 1 && std::strcmp(argv[1], "--probe") == 0) {
    if (dev.available) return 0;
    std::printf("no CUDA device: skipping (%s)\n", dev.reason.c_str());
    return 77;
  }
  ::testing::InitGoogleTest(&argc, argv);
  if (!dev.available) {
    ::testing::GTEST_FLAG(filter) = "CudaNoDevice.*";
    const int rc = RUN_ALL_TESTS();
    if (rc != 0) return rc;
    std::printf("no CUDA device: skipping the GPU suites (%s; only CudaNoDevice ran)\n",
                dev.reason.c_str());
    return 77;
  }
  std::printf("CUDA device: %s (%d found)\n", dev.name.c_str(), dev.count);
  return RUN_ALL_TESTS();
}
