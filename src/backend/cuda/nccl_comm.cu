// NCCL communicators (backend/communicator.h): one communicator per GPU of this process
// (ncclCommInitAll), all-reduce enqueued on the rank's device stream. Compiled only when CMake
// found nccl.h (TCA_HAVE_NCCL); otherwise communicator.cpp's stub names the missing library.
// libnccl.so.2 is opened at run time (dlopen) on the first --tensor-parallel, so binaries start
// on machines without NCCL (the CUDA tests, single-GPU runs) and say so in one line when asked.
#if TCA_HAVE_NCCL
#include <nccl.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "backend/communicator.h"
#include "backend/cuda/cuda_check.cuh"
#include "backend/cuda/cuda_runtime.h"
#include "backend/cuda/dynamic_library.h"

namespace tca {
namespace {

// The NCCL entry points used here, resolved from libnccl.so.2.
struct NcclApi {
    decltype(&ncclGetErrorString) get_error_string = nullptr;
    decltype(&ncclCommInitAll) comm_init_all = nullptr;
    decltype(&ncclAllReduce) all_reduce = nullptr;
    decltype(&ncclCommDestroy) comm_destroy = nullptr;
    decltype(&ncclCommAbort) comm_abort = nullptr;
};

Result<const NcclApi*> nccl_api() {
    static NcclApi api;
    static std::string error;
    static std::once_flag once;
    std::call_once(once, [] {
        cuda::DynamicLibrary lib = cuda::DynamicLibrary::open({"libnccl.so.2"});
        if (!lib.handle) {
            error = "--tensor-parallel on cuda: cannot load libnccl.so.2 (" + lib.error +
                    "); install NCCL or add its lib directory to LD_LIBRARY_PATH";
            return;
        }
        lib.resolve("ncclGetErrorString", api.get_error_string);
        lib.resolve("ncclCommInitAll", api.comm_init_all);
        lib.resolve("ncclAllReduce", api.all_reduce);
        lib.resolve("ncclCommDestroy", api.comm_destroy);
        lib.resolve("ncclCommAbort", api.comm_abort);
        error = lib.error;
    });
    if (!error.empty()) return unsupported("%s", error.c_str());
    return &api;
}

Status nccl_status(const NcclApi& api, ncclResult_t r, const char* what) {
    if (r == ncclSuccess) return Status();
    return device_error("nccl: %s failed: %s", what, api.get_error_string(r));
}

class NcclCommunicator final : public Communicator {
public:
    NcclCommunicator(const NcclApi& api, ncclComm_t comm, int rank, int n_ranks)
        : api_(api), comm_(comm), rank_(rank), n_ranks_(n_ranks) {}
    ~NcclCommunicator() override {
        if (comm_) api_.comm_destroy(comm_);
    }
    NcclCommunicator(const NcclCommunicator&) = delete;
    NcclCommunicator& operator=(const NcclCommunicator&) = delete;
    int rank() const override { return rank_; }
    int n_ranks() const override { return n_ranks_; }
    // NCCL's ring/tree sum order is fixed for a given communicator and size, so results are
    // reproducible from run to run (not bitwise equal to TP=1's single matmul).
    Status all_reduce_sum(float* data, int64_t n) override {
        TCA_ASSERT(cuda::current_device() == rank_, "rank %d all-reduce on device %d", rank_,
                   cuda::current_device());
        if (!comm_) return device_error("tensor parallel: another rank failed");
        return nccl_status(api_, api_.all_reduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum,
                                                 comm_, cuda::cu_stream()),
                           "ncclAllReduce");
    }
    void abort() override {
        if (comm_) api_.comm_abort(comm_);
        comm_ = nullptr;
    }

private:
    const NcclApi& api_;
    ncclComm_t comm_;
    int rank_, n_ranks_;
};

}  // namespace

Result<std::vector<std::unique_ptr<Communicator>>> create_nccl_communicators(int n_ranks) {
    TCA_RETURN_IF_ERROR(cuda::device_check());
    TCA_ASSIGN_OR_RETURN(const NcclApi* api, nccl_api());
    int n_devices = 0;
    TCA_CUDA_RETURN_IF_ERROR(cudaGetDeviceCount(&n_devices));
    if (n_ranks > n_devices) {
        return unsupported("--tensor-parallel %d needs %d GPUs; %d visible", n_ranks, n_ranks, n_devices);
    }
    // NVLink multicast (NVLS) stays off unless the user asks for it.
    setenv("NCCL_NVLS_ENABLE", "0", /*overwrite=*/0);
    std::vector<ncclComm_t> comms(static_cast<size_t>(n_ranks), nullptr);
    std::vector<int> devices(static_cast<size_t>(n_ranks));
    for (int r = 0; r < n_ranks; ++r) devices[static_cast<size_t>(r)] = r;
    TCA_RETURN_IF_ERROR(nccl_status(*api, api->comm_init_all(comms.data(), n_ranks, devices.data()),
                                    "ncclCommInitAll"));
    std::vector<std::unique_ptr<Communicator>> out;
    for (int r = 0; r < n_ranks; ++r) {
        out.push_back(std::make_unique<NcclCommunicator>(*api, comms[static_cast<size_t>(r)], r, n_ranks));
    }
    return Result<std::vector<std::unique_ptr<Communicator>>>(std::move(out));
}

}  // namespace tca
#endif  // TCA_HAVE_NCCL
