# FindxxHash
# ----------
# Provides the imported target xxHash::xxhash.
#
# Prefers xxHash's own package config (installed by its cmake_unofficial/ build, vcpkg, conan).
# Debian and Ubuntu ship only xxhash.h and a .pc file, so otherwise this module finds the header
# and makes an INTERFACE IMPORTED target from it. ckpt uses xxHash header-only
# (XXH_INLINE_ALL), so the include directory is all it needs; nothing is linked.
#
# Result variables: xxHash_FOUND, xxHash_VERSION, xxHash_INCLUDE_DIR.
# Installed next to ckptConfig.cmake, which puts this directory on CMAKE_MODULE_PATH.

find_package(xxHash ${xxHash_FIND_VERSION} CONFIG QUIET)
if(xxHash_FOUND AND TARGET xxHash::xxhash)
    include(FindPackageHandleStandardArgs)
    find_package_handle_standard_args(xxHash CONFIG_MODE)
    return()
endif()

find_path(xxHash_INCLUDE_DIR NAMES xxhash.h DOC "Folder holding xxhash.h")
mark_as_advanced(xxHash_INCLUDE_DIR)

unset(xxHash_VERSION)
if(xxHash_INCLUDE_DIR AND EXISTS "${xxHash_INCLUDE_DIR}/xxhash.h")
    file(STRINGS "${xxHash_INCLUDE_DIR}/xxhash.h" _xxhash_version_lines
         REGEX "^#define XXH_VERSION_(MAJOR|MINOR|RELEASE) +[0-9]+")
    foreach(_xxhash_part IN ITEMS MAJOR MINOR RELEASE)
        set(_xxhash_${_xxhash_part} "")
        foreach(_xxhash_line IN LISTS _xxhash_version_lines)
            if(_xxhash_line MATCHES "^#define XXH_VERSION_${_xxhash_part} +([0-9]+)")
                set(_xxhash_${_xxhash_part} "${CMAKE_MATCH_1}")
            endif()
        endforeach()
    endforeach()
    set(xxHash_VERSION "${_xxhash_MAJOR}.${_xxhash_MINOR}.${_xxhash_RELEASE}")
    unset(_xxhash_version_lines)
    unset(_xxhash_part)
    unset(_xxhash_line)
    unset(_xxhash_MAJOR)
    unset(_xxhash_MINOR)
    unset(_xxhash_RELEASE)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(xxHash
    REQUIRED_VARS xxHash_INCLUDE_DIR
    VERSION_VAR xxHash_VERSION)

if(xxHash_FOUND AND NOT TARGET xxHash::xxhash)
    add_library(xxHash::xxhash INTERFACE IMPORTED)
    set_target_properties(xxHash::xxhash PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${xxHash_INCLUDE_DIR}")
endif()
