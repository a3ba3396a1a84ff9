// Shared by the MPI test files: the communicator every test uses (made in main.cpp).
#pragma once

#include "gradcomp/communicator.hpp"

namespace gradcomp::test {
Communicator& world();
}  // namespace gradcomp::test
