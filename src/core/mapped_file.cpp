// MappedFile implementation: open + fstat + mmap(PROT_READ, MAP_PRIVATE), munmap on destruction.
#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace tca {

MappedFile::~MappedFile() { reset(); }

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this == &other) return *this;
    reset();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mapping_ = std::exchange(other.mapping_, nullptr);
    owned_ = std::move(other.owned_);  // moving a vector keeps its heap block: data_ stays valid
    other.owned_.clear();
    return *this;
}

void MappedFile::reset() {
    if (mapping_ != nullptr) munmap(mapping_, static_cast<size_t>(size_));
    mapping_ = nullptr;
    data_ = nullptr;
    size_ = 0;
    owned_.clear();
}

Result<MappedFile> MappedFile::open(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        const int err = errno;
        if (err == ENOENT) return not_found("cannot open %s: %s", path.c_str(), std::strerror(err));
        return io_error("cannot open %s: %s", path.c_str(), std::strerror(err));
    }
    struct stat st {};
    if (fstat(fd, &st) != 0) {
        const int err = errno;
        ::close(fd);
        return io_error("cannot stat %s: %s", path.c_str(), std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        return invalid_argument("cannot map %s: not a regular file", path.c_str());
    }
    MappedFile f;
    f.path_ = path;
    f.size_ = static_cast<uint64_t>(st.st_size);
    if (f.size_ > 0) {
        void* p = mmap(nullptr, static_cast<size_t>(f.size_), PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            return io_error("cannot mmap %s (%llu bytes): %s", path.c_str(),
                            static_cast<unsigned long long>(f.size_), std::strerror(err));
        }
        f.mapping_ = p;
        f.data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);  // the mapping keeps the file referenced
    return f;
}

MappedFile MappedFile::from_bytes(std::vector<uint8_t> bytes, std::string name) {
    MappedFile f;
    f.path_ = std::move(name);
    f.owned_ = std::move(bytes);
    f.size_ = f.owned_.size();
    f.data_ = f.owned_.empty() ? nullptr : f.owned_.data();
    return f;
}

}  // namespace tca
