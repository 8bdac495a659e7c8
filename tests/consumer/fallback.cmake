# cmake -DENV_FILE=<env.cmake> -DCKPT_ARCHIVE=<ckpt-x.y.z.tar.xz> -DCONSUMER_DIR=<tests/consumer>
#       -DBINARY_DIR=<dir> -P fallback.cmake
#
# Proves ckpt's dependency fallback (cmake/ckpt_dependencies.cmake) offline: every dependency's
# find_package is disabled, so each is fetched from an archive through CKPT_<NAME>_URL and
# CKPT_<NAME>_URL_HASH, as it would be from its release tarball. The consumer project then takes
# ckpt itself from its source archive, builds and runs.
#
# The archives are made here from the *installed* headers (Debian's packages ship headers and
# CMake configs, not the upstream build files), each with a minimal CMakeLists.txt of this test's
# own that exports the target name upstream's does (cereal::cereal, Eigen3::Eigen,
# xxHash::xxhash; RapidJSON has none, ckpt makes its target). So this proves ckpt's fallback
# wiring (declaration, download and hash check, SOURCE_SUBDIR, targets, SYSTEM include
# directories), not the upstream builds. It would have caught CMake 3.25.1 reading SYSTEM as part
# of URL_HASH, which FETCHCONTENT_SOURCE_DIR_<NAME> (no download step) cannot.
#
# ENV_FILE (written by tests/CMakeLists.txt) sets CXX, GENERATOR, MAKE_PROGRAM and INCLUDE_DIRS,
# the include folders of the installed dependencies. The consumer is built as the other consumer
# tests build it (Debug, -O0, see tests/CMakeLists.txt).
cmake_minimum_required(VERSION 3.25)
include("${ENV_FILE}")

# The folder of INCLUDE_DIRS that holds `entry`.
function(installed var entry)
    foreach(dir IN LISTS INCLUDE_DIRS)
        if(EXISTS "${dir}/${entry}")
            set(${var} "${dir}" PARENT_SCOPE)
            return()
        endif()
    endforeach()
    message(FATAL_ERROR "fallback: no installed ${entry} in ${INCLUDE_DIRS}")
endfunction()
installed(CEREAL_INCLUDE cereal/cereal.hpp)
installed(EIGEN_INCLUDE Eigen/Core)
installed(XXHASH_INCLUDE xxhash.h)
installed(RAPIDJSON_INCLUDE rapidjson/document.h)

file(REMOVE_RECURSE "${BINARY_DIR}")
file(MAKE_DIRECTORY "${BINARY_DIR}")

# Writes <BINARY_DIR>/<name>.tar.gz with one top folder holding `files` (source=destination
# pairs, folders copied whole) and `cmakelists` at `cmakelists_at`; sets <name>_url, <name>_hash.
function(make_archive name cmakelists_at cmakelists)
    set(top "${BINARY_DIR}/${name}-src")
    file(REMOVE_RECURSE "${top}")
    foreach(pair IN LISTS ARGN)
        string(REPLACE "=" ";" pair "${pair}")
        list(GET pair 0 from)
        list(GET pair 1 to)
        get_filename_component(to_dir "${top}/${to}" DIRECTORY)
        file(MAKE_DIRECTORY "${to_dir}")
        if(IS_DIRECTORY "${from}")
            file(COPY "${from}/" DESTINATION "${top}/${to}")
        else()
            file(COPY_FILE "${from}" "${top}/${to}")
        endif()
    endforeach()
    if(NOT cmakelists_at STREQUAL "")
        file(WRITE "${top}/${cmakelists_at}/CMakeLists.txt" "${cmakelists}")
    endif()
    execute_process(COMMAND "${CMAKE_COMMAND}" -E tar czf "${name}.tar.gz" "${name}-src"
        WORKING_DIRECTORY "${BINARY_DIR}" RESULT_VARIABLE result)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "fallback: could not write ${name}.tar.gz")
    endif()
    file(SHA256 "${BINARY_DIR}/${name}.tar.gz" hash)
    set(${name}_url "file://${BINARY_DIR}/${name}.tar.gz" PARENT_SCOPE)
    set(${name}_hash "SHA256=${hash}" PARENT_SCOPE)
endfunction()

make_archive(cereal "." [=[
cmake_minimum_required(VERSION 3.25)
project(cereal VERSION 1.3.2 LANGUAGES CXX)
add_library(cereal INTERFACE)
add_library(cereal::cereal ALIAS cereal)
target_include_directories(cereal INTERFACE "${CMAKE_CURRENT_SOURCE_DIR}/include")
]=] "${CEREAL_INCLUDE}/cereal=include/cereal")

make_archive(eigen "." [=[
cmake_minimum_required(VERSION 3.25)
project(Eigen3 VERSION 3.4.0 LANGUAGES CXX)
add_library(eigen INTERFACE)
add_library(Eigen3::Eigen ALIAS eigen)
target_include_directories(eigen INTERFACE "${CMAKE_CURRENT_SOURCE_DIR}")
]=] "${EIGEN_INCLUDE}/Eigen=Eigen")

# Upstream's CMakeLists.txt is in cmake_unofficial/ and the header one level up.
make_archive(xxhash "cmake_unofficial" [=[
cmake_minimum_required(VERSION 3.25)
project(xxHash VERSION 0.8.1 LANGUAGES C)
add_library(xxhash INTERFACE)
add_library(xxHash::xxhash ALIAS xxhash)
target_include_directories(xxhash INTERFACE "${CMAKE_CURRENT_SOURCE_DIR}/..")
]=] "${XXHASH_INCLUDE}/xxhash.h=xxhash.h")

# No CMakeLists.txt: ckpt uses include/ of the archive (SOURCE_SUBDIR include) and makes the
# target itself, as it does with the real tarball.
make_archive(rapidjson "" "" "${RAPIDJSON_INCLUDE}/rapidjson=include/rapidjson")

set(consumer_build "${BINARY_DIR}/consumer")
execute_process(
    COMMAND "${CMAKE_COMMAND}" -S "${CONSUMER_DIR}" -B "${consumer_build}"
        -G "${GENERATOR}" "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}"
        "-DCMAKE_CXX_COMPILER=${CXX}" -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0
        -DCMAKE_EXPORT_COMPILE_COMMANDS=ON
        -DCKPT_CONSUMER_MODE=fetch_content "-DCKPT_ARCHIVE=${CKPT_ARCHIVE}"
        -DCMAKE_DISABLE_FIND_PACKAGE_cereal=ON -DCMAKE_DISABLE_FIND_PACKAGE_Eigen3=ON
        -DCMAKE_DISABLE_FIND_PACKAGE_xxHash=ON -DCMAKE_DISABLE_FIND_PACKAGE_RapidJSON=ON
        "-DCKPT_CEREAL_URL=${cereal_url}" "-DCKPT_CEREAL_URL_HASH=${cereal_hash}"
        "-DCKPT_EIGEN3_URL=${eigen_url}" "-DCKPT_EIGEN3_URL_HASH=${eigen_hash}"
        "-DCKPT_XXHASH_URL=${xxhash_url}" "-DCKPT_XXHASH_URL_HASH=${xxhash_hash}"
        "-DCKPT_RAPIDJSON_URL=${rapidjson_url}" "-DCKPT_RAPIDJSON_URL_HASH=${rapidjson_hash}"
    OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE result)
message(STATUS "${out}")
if(NOT result EQUAL 0)
    message(FATAL_ERROR "fallback: configuring the consumer failed:\n${err}")
endif()
if(NOT out MATCHES "not found installed, fetched instead: cereal, Eigen3, xxHash, RapidJSON")
    message(FATAL_ERROR "fallback: ckpt did not fetch all four dependencies")
endif()

# The fetched headers reach the consumer as system headers, as installed ones would.
file(READ "${consumer_build}/compile_commands.json" commands)
foreach(dep IN ITEMS cereal eigen3 xxhash rapidjson)
    if(NOT commands MATCHES "-isystem [^ ]*/_deps/${dep}-src")
        message(FATAL_ERROR "fallback: the fetched ${dep} is not on the consumer's compile "
                            "line as -isystem:\n${commands}")
    endif()
endforeach()

execute_process(COMMAND "${CMAKE_COMMAND}" --build "${consumer_build}" --config Debug
    RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "fallback: building the consumer failed")
endif()
execute_process(COMMAND "${consumer_build}/consumer" WORKING_DIRECTORY "${consumer_build}"
    RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "fallback: the consumer failed (${result})")
endif()
