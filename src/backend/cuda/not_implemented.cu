// CUDA ops that have no kernel yet: each returns a one-line "unsupported" error through the
// dispatch. A kernel file that implements an op removes its line here.
#include "backend/cuda/cuda_ops.h"

namespace tca::cuda {

#define TCA_CUDA_NOT_IMPLEMENTED(name, Params)                                         \
    Status name(const Params& p) {                                                     \
        TCA_RETURN_IF_ERROR(validate(p));                                              \
        return unsupported(#name ": not implemented on the cuda device yet");          \
    }

#undef TCA_CUDA_NOT_IMPLEMENTED

}  // namespace tca::cuda
