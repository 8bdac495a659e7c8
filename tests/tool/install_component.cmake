# cmake -DBUILD_DIR=<ckpt build> -DPREFIX=<stage> [-DCONFIG=<cfg>] -P install_component.cmake
# The ckpt command is an install component of its own: installing ckpt_tools gives bin/ckpt and
# nothing else, installing ckpt_development gives the headers and the package config and no
# program (the package stays header-only and architecture-independent).
cmake_minimum_required(VERSION 3.25)
set(config_args "")
if(CONFIG)
    set(config_args --config "${CONFIG}")
endif()

function(install_component component prefix)
    file(REMOVE_RECURSE "${prefix}")
    execute_process(
        COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${prefix}"
                --component ${component} ${config_args}
        RESULT_VARIABLE result OUTPUT_QUIET)
    if(NOT result EQUAL 0)
        message(FATAL_ERROR "cmake --install --component ${component} failed (${result})")
    endif()
    file(GLOB_RECURSE installed RELATIVE "${prefix}" "${prefix}/*")
    set(installed ${installed} PARENT_SCOPE)
endfunction()

install_component(ckpt_tools "${PREFIX}/tools")
if(NOT installed STREQUAL "bin/ckpt")
    message(FATAL_ERROR "component ckpt_tools installed '${installed}', not just bin/ckpt")
endif()
execute_process(COMMAND "${PREFIX}/tools/bin/ckpt" --version
    RESULT_VARIABLE result OUTPUT_VARIABLE version)
if(NOT result EQUAL 0 OR NOT version MATCHES "^ckpt [0-9]+\\.[0-9]+\\.[0-9]+")
    message(FATAL_ERROR "the installed ckpt --version gave ${result}: ${version}")
endif()

install_component(ckpt_development "${PREFIX}/development")
list(FILTER installed INCLUDE REGEX "^bin/")
if(installed)
    message(FATAL_ERROR "component ckpt_development installed programs: ${installed}")
endif()
if(NOT EXISTS "${PREFIX}/development/include/ckpt/ckpt.hpp"
   OR NOT EXISTS "${PREFIX}/development/share/cmake/ckpt/ckptConfig.cmake")
    message(FATAL_ERROR "component ckpt_development lacks the headers or the package config")
endif()
message(STATUS "ckpt_tools: bin/ckpt (${version}); ckpt_development: headers and config")
