# Warning flags for every target of the project (errors when TFU_WERROR is on).
set(TFU_WARNINGS -Wall -Wextra -Wno-missing-field-initializers)
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
  list(APPEND TFU_WARNINGS -Wshadow=local)  # clang 14 does not know it
endif()
if(TFU_WERROR)
  list(APPEND TFU_WARNINGS -Werror)
endif()
function(tfu_target_warnings target)
  target_compile_options(${target} PRIVATE ${TFU_WARNINGS})
endfunction()
