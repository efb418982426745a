# tfu_add_backend_module(<kind> SOURCES ...): a GPU backend module, libtfusion-<kind>.so (backend/module.h),
# loaded by the engine at run time. It carries its own copy of engine/core and engine/backend (hidden symbols,
# so nothing clashes with libtfusion's copy) and lands in build/<preset>/modules/, where the loader looks in a
# build tree. Its sources may include only core/ and backend/ (checked here, as DESIGN.md's layering says).
function(tfu_add_backend_module kind)
  cmake_parse_arguments(M "" "" "SOURCES" ${ARGN})
  find_package(Threads REQUIRED)
  foreach(f ${M_SOURCES})
    if(NOT EXISTS "${f}" AND NOT EXISTS "${CMAKE_CURRENT_SOURCE_DIR}/${f}")
      continue()  # generated at build time (e.g. embedded SPIR-V): nothing to check yet
    endif()
    if(NOT IS_ABSOLUTE "${f}")
      set(f "${CMAKE_CURRENT_SOURCE_DIR}/${f}")
    endif()
    file(STRINGS "${f}" incs REGEX "^#include \"[a-z_]+/")
    foreach(inc ${incs})
      string(REGEX REPLACE "^#include \"([a-z_]+)/.*" "\\1" dep "${inc}")
      list(FIND TFU_ALL_MODULES ${dep} is_module)
      if(NOT is_module EQUAL -1 AND NOT dep STREQUAL "core" AND NOT dep STREQUAL "backend")
        message(FATAL_ERROR "layering: ${f} (backend module ${kind}) includes ${dep}/: modules see only core/ and backend/")
      endif()
    endforeach()
  endforeach()
  set(target tfusion-${kind})
  add_library(${target} SHARED ${M_SOURCES} $<TARGET_OBJECTS:tfu_core> $<TARGET_OBJECTS:tfu_backend>)
  target_include_directories(${target} PRIVATE "${CMAKE_SOURCE_DIR}/engine" "${CMAKE_SOURCE_DIR}/include"
                                               "${CMAKE_CURRENT_SOURCE_DIR}")
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-fvisibility=hidden -fvisibility-inlines-hidden>)
  target_link_libraries(${target} PRIVATE Threads::Threads ${CMAKE_DL_LIBS})
  # Only tfu_module_create is exported: a version script also hides the weak template instantiations that the
  # C++ standard library would otherwise export.
  set(map "${CMAKE_BINARY_DIR}/tfu_module_exports.map")
  file(WRITE "${map}" "{\n  global: tfu_module_create;\n  local: *;\n};\n")
  target_link_options(${target} PRIVATE -Wl,--no-undefined "-Wl,--version-script=${map}")
  set_property(TARGET ${target} APPEND PROPERTY LINK_DEPENDS "${map}")
  set_target_properties(${target} PROPERTIES LIBRARY_OUTPUT_DIRECTORY "${CMAKE_BINARY_DIR}/modules" PREFIX "lib")
endfunction()
