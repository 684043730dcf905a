#include "kernels/common/error.h"

namespace iss {

void throw_call_error(const char* library, const char* statement, const char* file, int line,
                      const std::string& message) {
    throw Error(cat(library, " error in `", statement, "` at ", file, ":", line, ": ", message));
}

}  // namespace iss
