# cmake -DENV_FILE=<env.cmake> -DSOURCE=<main.cpp> -DBINARY_DIR=<dir> -P single_header.cmake
# Builds SOURCE against the single header with a plain compiler call, then runs it.
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

file(MAKE_DIRECTORY "${BINARY_DIR}")
set(program "${BINARY_DIR}/consumer")
set(command "${CXX}" -std=c++20 ${include_flags} "${SOURCE}" -o "${program}")
list(JOIN command " " shown)
message(STATUS "${shown}")
execute_process(COMMAND ${command} RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "single_header: compiling ${SOURCE} failed (${result})")
endif()

execute_process(COMMAND "${program}" WORKING_DIRECTORY "${BINARY_DIR}" RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "single_header: ${program} failed (${result})")
endif()
