// tfu::error: the exception the engine throws inside; engine/api turns it into a tfu_status + message.
#pragma once

#include <stdexcept>
#include <string>

#include "tfusion/tfusion.h"

namespace tfu {

class error : public std::runtime_error {
public:
    error(tfu_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
    tfu_status status() const noexcept { return status_; }

private:
    tfu_status status_;
};

// Throws tfu::error; the message should name the file, tensor or field at fault.
[[noreturn]] inline void fail(tfu_status status, const std::string& message) { throw error(status, message); }

// For broken internal invariants only (never for bad input): throws TFU_STATUS_INTERNAL with the place.
#define TFU_CHECK(cond)                                                                                     \
    do {                                                                                                    \
        if (!(cond))                                                                                        \
            ::tfu::fail(TFU_STATUS_INTERNAL, std::string("internal check failed: " #cond " at ") + __FILE__ + \
                                                 ":" + std::to_string(__LINE__));                          \
    } while (0)

}  // namespace tfu
