// The MPI backend of the communicator interface (include/gradcomp/communicator.hpp), on host
// buffers. Built when GRADCOMP_HAVE_MPI (Open MPI from Debian).
#pragma once

#include <mpi.h>

#include <memory>

#include "gradcomp/communicator.hpp"
#include "gradcomp/status.hpp"

namespace gradcomp::coll {

// Wraps comm without owning it: the caller keeps MPI initialised and comm alive while the
// communicator exists. The communicator sets MPI_ERRORS_RETURN on its own duplicate of comm so
// that MPI errors come back as kMpiError statuses with MPI's message.
Result<std::unique_ptr<Communicator>> make_mpi_communicator(MPI_Comm comm);

}  // namespace gradcomp::coll
