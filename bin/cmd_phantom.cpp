#include "bin/cli.h"
#include "bin/commands.h"

namespace iss::cli {
int cmd_phantom(int argc, char** argv) { return 0; }
}  // namespace iss::cli
