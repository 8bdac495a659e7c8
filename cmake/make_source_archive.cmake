# cmake [-DOUTPUT_DIR=<dir>] -P cmake/make_source_archive.cmake
#
# Writes <OUTPUT_DIR>/ckpt-<version>.tar.xz from the *working tree* (not from git), for users of
# FetchContent_Declare(ckpt URL ...): the top-level CMakeLists.txt, cmake/, include/,
# single_include/, src/ (the compiled mode), LICENSE and README.md, under one top folder
# ckpt-<version>/. Missing entries are skipped. Reproducible: files in sorted order, fixed
# modification time, no directory entries.
# OUTPUT_DIR defaults to the current directory.

cmake_minimum_required(VERSION 3.25)

get_filename_component(source_dir "${CMAKE_CURRENT_LIST_DIR}/.." ABSOLUTE)
include("${CMAKE_CURRENT_LIST_DIR}/ckpt_version.cmake")
ckpt_extract_version("${source_dir}/include/ckpt/version.hpp" version)

if(NOT DEFINED OUTPUT_DIR)
    set(OUTPUT_DIR "${CMAKE_CURRENT_BINARY_DIR}") # the caller's working directory in -P mode
endif()
get_filename_component(OUTPUT_DIR "${OUTPUT_DIR}" ABSOLUTE)

set(top "ckpt-${version}")
set(archive "${OUTPUT_DIR}/${top}.tar.xz")
set(staging "${OUTPUT_DIR}/${top}.staging")

# Collect the files, relative to the source tree, sorted.
set(files "")
foreach(entry IN ITEMS CMakeLists.txt cmake include single_include src LICENSE README.md)
    if(IS_DIRECTORY "${source_dir}/${entry}")
        file(GLOB_RECURSE found LIST_DIRECTORIES false RELATIVE "${source_dir}"
             "${source_dir}/${entry}/*")
        list(APPEND files ${found})
    elseif(EXISTS "${source_dir}/${entry}")
        list(APPEND files "${entry}")
    else()
        message(STATUS "make_source_archive: ${entry} does not exist, skipped")
    endif()
endforeach()
list(SORT files)

# Stage under the top folder, so the archive paths are ckpt-<version>/...
file(REMOVE_RECURSE "${staging}")
set(members "")
foreach(file IN LISTS files)
    get_filename_component(dir "${file}" DIRECTORY)
    file(COPY "${source_dir}/${file}" DESTINATION "${staging}/${top}/${dir}")
    list(APPEND members "${top}/${file}")
endforeach()

file(REMOVE "${archive}")
list(JOIN members "\n" member_list)
file(WRITE "${staging}/files.txt" "${member_list}\n")
execute_process(
    COMMAND "${CMAKE_COMMAND}" -E tar cfJ "${archive}"
            --format=gnutar "--mtime=2026-01-01 00:00:00 UTC" --files-from=files.txt
    WORKING_DIRECTORY "${staging}"
    RESULT_VARIABLE result)
file(REMOVE_RECURSE "${staging}")
if(NOT result EQUAL 0)
    message(FATAL_ERROR "make_source_archive: creating ${archive} failed (${result})")
endif()
list(LENGTH members count)
message(STATUS "make_source_archive: wrote ${archive} (${count} files)")
