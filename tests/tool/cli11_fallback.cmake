# cmake -DCKPT_SOURCE_DIR=<src> -DWORK=<dir> -DCLI11_INCLUDE=<dir with CLI/CLI.hpp> -P cli11_fallback.cmake
# How cmake/ckpt_cli11.cmake finds CLI11 for the ckpt command when no CLI11 is installed: a
# release tarball (here one made from the installed headers, served by a file:// URL) is used
# when its hash is the pinned one; a wrong hash, a failed download or no network access skip
# the tool with a message that says why, and never fail the configure.
cmake_minimum_required(VERSION 3.25)
if(NOT EXISTS "${CLI11_INCLUDE}/CLI/CLI.hpp")
    message(FATAL_ERROR "CLI11_INCLUDE='${CLI11_INCLUDE}' holds no CLI/CLI.hpp")
endif()
file(REMOVE_RECURSE "${WORK}")
file(COPY "${CLI11_INCLUDE}/CLI" DESTINATION "${WORK}/CLI11-9.9.9/include")
execute_process(COMMAND "${CMAKE_COMMAND}" -E tar czf cli11.tar.gz CLI11-9.9.9
    WORKING_DIRECTORY "${WORK}" COMMAND_ERROR_IS_FATAL ANY)
file(SHA256 "${WORK}/cli11.tar.gz" hash)

# configure(<name> <expected target> <expected message regex> <args>...)
function(configure name target pattern)
    execute_process(
        COMMAND "${CMAKE_COMMAND}" -S "${CKPT_SOURCE_DIR}/tests/tool/cli11_fallback"
                -B "${WORK}/${name}" "-DCKPT_SOURCE_DIR=${CKPT_SOURCE_DIR}"
                -DCMAKE_DISABLE_FIND_PACKAGE_CLI11=ON ${ARGN}
        WORKING_DIRECTORY "${WORK}"
        RESULT_VARIABLE result OUTPUT_VARIABLE out ERROR_VARIABLE err)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "${name}: the configure failed (${result}):\n${out}\n${err}")
    endif()
    if(NOT out MATCHES "ckpt_cli11_target=\\[${target}\\]")
        message(FATAL_ERROR "${name}: expected target [${target}]:\n${out}")
    endif()
    if(NOT out MATCHES "${pattern}")
        message(FATAL_ERROR "${name}: expected a message matching '${pattern}':\n${out}")
    endif()
    message(STATUS "${name}: ok")
endfunction()

set(url "file://${WORK}/cli11.tar.gz")
configure(pinned ckpt_cli11 "uses CLI11 from file://"
    "-DCKPT_CLI11_URL=${url}" "-DCKPT_CLI11_URL_HASH=SHA256=${hash}")
if(NOT EXISTS "${WORK}/pinned/_deps/cli11/include/CLI/CLI.hpp")
    message(FATAL_ERROR "pinned: CLI11's headers were not unpacked")
endif()
configure(wrong-hash "" "is not built: .*has SHA256 ${hash}, not the pinned 00"
    "-DCKPT_CLI11_URL=${url}" "-DCKPT_CLI11_URL_HASH=SHA256=00")
configure(no-file "" "is not built: .*downloading file://.*/missing.tar.gz failed"
    "-DCKPT_CLI11_URL=file://${WORK}/missing.tar.gz" "-DCKPT_CLI11_URL_HASH=SHA256=${hash}")
configure(disconnected "" "is not built: .*FETCHCONTENT_FULLY_DISCONNECTED is set"
    -DFETCHCONTENT_FULLY_DISCONNECTED=ON)
