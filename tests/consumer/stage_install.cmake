# cmake -DBUILD_DIR=<ckpt build> -DPREFIX=<stage> [-DCONFIG=<cfg>] -P stage_install.cmake
# Installs ckpt into a freshly wiped prefix.
cmake_minimum_required(VERSION 3.25)
foreach(var IN ITEMS BUILD_DIR PREFIX)
    if(NOT ${var})
        message(FATAL_ERROR "stage_install: ${var} not set")
    endif()
endforeach()
file(REMOVE_RECURSE "${PREFIX}")
set(config_args "")
if(CONFIG)
    set(config_args --config "${CONFIG}")
endif()
execute_process(
    COMMAND "${CMAKE_COMMAND}" --install "${BUILD_DIR}" --prefix "${PREFIX}" ${config_args}
    RESULT_VARIABLE result)
if(NOT result EQUAL 0)
    message(FATAL_ERROR "stage_install: cmake --install failed (${result})")
endif()
