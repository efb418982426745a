// tfu::mapped_file: a whole file mapped read-only into memory (POSIX mmap), for GGUF and safetensors readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tfu {

// Maps the file at `path` read-only (MAP_PRIVATE) and closes the descriptor at once; unmaps on destruction.
// Missing file: TFU_STATUS_NOT_FOUND; a directory, a non-regular file or a failing open/fstat/mmap:
// TFU_STATUS_IO_ERROR with strerror. An empty file maps to size() 0 and data() nullptr (mmap refuses length 0).
// Nothing is read at mapping time: pages load on first touch. If the file shrinks while mapped, touching the
// lost pages raises SIGBUS; that cannot be guarded against here (same as every mmap-based loader).
class mapped_file {
public:
    explicit mapped_file(const std::string& path);
    ~mapped_file();
    mapped_file(const mapped_file&) = delete;
    mapped_file& operator=(const mapped_file&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }

private:
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
};

}  // namespace tfu
