# cmake -DENV_FILE=<env.cmake> -DSOURCE_DIR=<tests/consumer> -DBINARY_DIR=<dir> [-DMODE=compiled]
#       -P single_header.cmake
# Builds the consumer (main.cpp and second.cpp) against the single header with plain compiler
# calls, then runs it. MODE=compiled: every file with -DCKPT_COMPILED, plus one more file that
# defines CKPT_IMPLEMENTATION and includes the single header (the definitions, compiled once).
# ENV_FILE (written by tests/CMakeLists.txt) sets CXX, INCLUDE_DIRS (single_include/ and the
# dependencies' include folders) and IMPLICIT_DIRS (the compiler's own, not repeated).
cmake_minimum_required(VERSION 3.25)
include("${ENV_FILE}")

set(include_flags "")
foreach(dir IN LISTS INCLUDE_DIRS)
    if(NOT dir IN_LIST IMPLICIT_DIRS AND NOT "-I${dir}" IN_LIST include_flags)
        list(APPEND include_flags "-I${dir}")
    endif()
endforeach()

file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")
set(sources "${SOURCE_DIR}/main.cpp" "${SOURCE_DIR}/second.cpp")
set(defines "")
if(MODE STREQUAL "compiled")
    file(WRITE "${BINARY_DIR}/ckpt_impl.cpp"
         "#define CKPT_IMPLEMENTATION\n#include <ckpt/ckpt.hpp>\n")
    list(APPEND sources "${BINARY_DIR}/ckpt_impl.cpp")
    set(defines -DCKPT_COMPILED)
endif()

set(objects "")
foreach(source IN LISTS sources)
    get_filename_component(name "${source}" NAME_WE)
    set(object "${BINARY_DIR}/${name}.o")
    set(command "${CXX}" -std=c++20 ${defines} ${include_flags} -c "${source}" -o "${object}")
    list(JOIN command " " shown)
    message(STATUS "${shown}")
    execute_process(COMMAND ${command} RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "single_header: compiling ${source} failed (${result})")
    endif()
    list(APPEND objects "${object}")
endforeach()

set(program "${BINARY_DIR}/consumer")
execute_process(COMMAND "${CXX}" ${objects} -o "${program}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "single_header: linking ${program} failed (${result})")
endif()
execute_process(COMMAND "${program}" WORKING_DIRECTORY "${BINARY_DIR}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "single_header: ${program} failed (${result})")
endif()
