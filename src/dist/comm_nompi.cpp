// The build without MPI: every run is one process (dist::load_model refuses --split).
#include "dist/local_comm.h"

namespace owl::dist {

bool Comm::built_with_mpi() { return false; }

Comm& Comm::world() {
  static LocalComm c;
  return c;
}

}  // namespace owl::dist
