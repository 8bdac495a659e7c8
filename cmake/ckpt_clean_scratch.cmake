# cmake -DSCRATCH_DIR=<dir> -P cmake/ckpt_clean_scratch.cmake
# Empties every test's scratch folder <dir>/<test> but keeps the folders, which ctest needs to
# exist as working directories.
cmake_minimum_required(VERSION 3.25)
if(NOT SCRATCH_DIR)
    message(FATAL_ERROR "ckpt_clean_scratch: SCRATCH_DIR not set")
endif()
file(GLOB folders LIST_DIRECTORIES true "${SCRATCH_DIR}/*")
foreach(folder IN LISTS folders)
    if(IS_DIRECTORY "${folder}")
        file(GLOB leftovers LIST_DIRECTORIES true "${folder}/*") # also matches dot files
        if(leftovers)
            file(REMOVE_RECURSE ${leftovers})
        endif()
    endif()
endforeach()
