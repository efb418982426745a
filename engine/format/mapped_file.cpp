// Read-only whole-file memory map with POSIX open/fstat/mmap; errors become tfu::error naming the path.
#include "format/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace tfu {

namespace {
[[noreturn]] void fail_errno(const std::string& path, const char* what, int err) {
    tfu_status st = (err == ENOENT || err == ENOTDIR) ? TFU_STATUS_NOT_FOUND : TFU_STATUS_IO_ERROR;
    fail(st, path + ": " + what + ": " + std::strerror(err));
}
}  // namespace

mapped_file::mapped_file(const std::string& path) {
    int fd;
    do {
        fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) fail_errno(path, "cannot open", errno);

    struct stat st;
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        fail_errno(path, "cannot stat", err);
    }
    if (S_ISDIR(st.st_mode)) {
        ::close(fd);
        fail(TFU_STATUS_IO_ERROR, path + ": is a directory, not a file");
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        fail(TFU_STATUS_IO_ERROR, path + ": not a regular file");
    }
    if (st.st_size < 0 || uint64_t(st.st_size) > uint64_t(SIZE_MAX)) {
        ::close(fd);
        fail(TFU_STATUS_IO_ERROR, path + ": file size " + std::to_string(st.st_size) + " cannot be mapped");
    }
    size_ = size_t(st.st_size);
    if (size_ == 0) {  // mmap of length 0 is EINVAL; callers see an empty buffer and refuse it themselves
        ::close(fd);
        return;
    }
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);  // the mapping keeps its own reference to the file
    if (p == MAP_FAILED) fail_errno(path, "cannot mmap", err);
    data_ = static_cast<const uint8_t*>(p);
}

mapped_file::~mapped_file() {
    if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

}  // namespace tfu
