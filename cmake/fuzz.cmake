# TFU_BUILD_FUZZ: libFuzzer builds (clang only). Included from the top CMakeLists.txt before engine/, so that
# every engine object gets the coverage instrumentation (-fsanitize=fuzzer-no-link) and ASan/UBSan; the fuzz
# executables themselves (tests/fuzz/) add -fsanitize=fuzzer, which links libFuzzer's main().
if(TFU_BUILD_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "TFU_BUILD_FUZZ needs clang (libFuzzer): use the 'fuzz' preset or "
                        "-DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
                      -fno-omit-frame-pointer)
  # Non-fuzz executables (unit tests) link the sanitizer runtimes, which also provide the coverage callbacks.
  add_link_options(-fsanitize=address,undefined)
  # cmake/warnings.cmake uses GCC's -Wshadow=local, unknown to clang: without this, -Werror fails every file.
  add_compile_options(-Wno-unknown-warning-option)
endif()
