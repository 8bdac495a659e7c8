# CLI11 for the `ckpt` command (tools/ckpt), never for the library: an installed CLI11 first
# (Debian: libcli11-dev), a pinned and hashed release tarball as the fallback, as ckpt's other
# dependencies are fetched. When neither works the tool is skipped with a message; nothing
# else depends on it. Sets ckpt_cli11_target to the target to link, or to "" when skipped.
#
# The fallback is downloaded by hand (file(DOWNLOAD) with a STATUS) rather than by
# FetchContent, whose failure would stop the whole configure: a library user without network
# access must still be able to build everything else. Only CLI11's headers are used.

# conan-center-index recipes/cli11/all/conandata.yml
set(CKPT_CLI11_URL "https://github.com/CLIUtils/CLI11/archive/v2.3.2.tar.gz" CACHE STRING
    "Where ckpt fetches CLI11 (for the ckpt command) when no installed CLI11 is found")
set(CKPT_CLI11_URL_HASH
    "SHA256=aac0ab42108131ac5d3344a9db0fdf25c4db652296641955720a4fbe52334e22" CACHE STRING
    "The hash of CKPT_CLI11_URL (ALGO=value)")

set(ckpt_cli11_target "")
find_package(CLI11 2.1 CONFIG QUIET)
if(TARGET CLI11::CLI11)
    set(ckpt_cli11_target CLI11::CLI11)
    message(STATUS "ckpt: the ckpt command uses CLI11 ${CLI11_VERSION} (installed)")
    return()
endif()

set(_ckpt_cli11_dir "${PROJECT_BINARY_DIR}/_deps/cli11")
set(_ckpt_cli11_archive "${_ckpt_cli11_dir}/cli11.tar.gz")
string(REGEX MATCH "^([A-Za-z0-9]+)=(.*)$" _ckpt_hash_parts "${CKPT_CLI11_URL_HASH}")
set(_ckpt_hash_algo "${CMAKE_MATCH_1}")
set(_ckpt_hash_value "${CMAKE_MATCH_2}")
set(_ckpt_cli11_why "")
if(NOT EXISTS "${_ckpt_cli11_dir}/include/CLI/CLI.hpp")
    if(FETCHCONTENT_FULLY_DISCONNECTED)
        set(_ckpt_cli11_why "FETCHCONTENT_FULLY_DISCONNECTED is set")
    else()
        file(DOWNLOAD "${CKPT_CLI11_URL}" "${_ckpt_cli11_archive}"
            STATUS _ckpt_status INACTIVITY_TIMEOUT 30 TIMEOUT 120)
        list(GET _ckpt_status 0 _ckpt_code)
        if(NOT _ckpt_code EQUAL 0)
            list(GET _ckpt_status 1 _ckpt_message)
            set(_ckpt_cli11_why "downloading ${CKPT_CLI11_URL} failed: ${_ckpt_message}")
        else()
            file(${_ckpt_hash_algo} "${_ckpt_cli11_archive}" _ckpt_actual)
            if(NOT _ckpt_actual STREQUAL _ckpt_hash_value)
                string(CONCAT _ckpt_cli11_why "${CKPT_CLI11_URL} has ${_ckpt_hash_algo} "
                    "${_ckpt_actual}, not the pinned ${_ckpt_hash_value}")
            else()
                file(ARCHIVE_EXTRACT INPUT "${_ckpt_cli11_archive}"
                    DESTINATION "${_ckpt_cli11_dir}/src")
                file(GLOB _ckpt_cli11_src "${_ckpt_cli11_dir}/src/*/include")
                if(_ckpt_cli11_src)
                    list(GET _ckpt_cli11_src 0 _ckpt_cli11_src)
                    file(COPY "${_ckpt_cli11_src}/" DESTINATION "${_ckpt_cli11_dir}/include")
                else()
                    set(_ckpt_cli11_why "${CKPT_CLI11_URL} holds no include/ directory")
                endif()
            endif()
        endif()
        file(REMOVE "${_ckpt_cli11_archive}")
    endif()
endif()

if(EXISTS "${_ckpt_cli11_dir}/include/CLI/CLI.hpp")
    add_library(ckpt_cli11 INTERFACE)
    target_include_directories(ckpt_cli11 SYSTEM INTERFACE "${_ckpt_cli11_dir}/include")
    set(ckpt_cli11_target ckpt_cli11)
    message(STATUS "ckpt: the ckpt command uses CLI11 from ${CKPT_CLI11_URL}")
else()
    message(STATUS "ckpt: the ckpt command is not built: CLI11 is not installed "
        "(Debian: libcli11-dev) and could not be fetched (${_ckpt_cli11_why}). The library, "
        "its tests and examples do not need it.")
endif()
