# FindRapidJSON
# -------------
# Provides the imported target RapidJSON::RapidJSON.
#
# RapidJSON's package config differs between releases: 1.1.0 (what Debian ships) only sets
# RAPIDJSON_INCLUDE_DIRS, some later snapshots define a target called RapidJSON, current master
# defines RapidJSON::RapidJSON. This module tries the config first, then looks for the header,
# and always ends with an INTERFACE IMPORTED RapidJSON::RapidJSON (RapidJSON is header-only).
#
# Result variables: RapidJSON_FOUND, RapidJSON_VERSION, RapidJSON_INCLUDE_DIR.
# Installed next to ckptConfig.cmake, which puts this directory on CMAKE_MODULE_PATH.

find_package(RapidJSON ${RapidJSON_FIND_VERSION} CONFIG QUIET)

if(NOT RapidJSON_INCLUDE_DIR)
    if(RapidJSON_FOUND AND TARGET RapidJSON::RapidJSON)
        get_target_property(_rapidjson_dirs RapidJSON::RapidJSON INTERFACE_INCLUDE_DIRECTORIES)
    elseif(RapidJSON_FOUND AND TARGET RapidJSON)
        get_target_property(_rapidjson_dirs RapidJSON INTERFACE_INCLUDE_DIRECTORIES)
    elseif(RapidJSON_FOUND AND RapidJSON_INCLUDE_DIRS)
        set(_rapidjson_dirs "${RapidJSON_INCLUDE_DIRS}")
    elseif(RapidJSON_FOUND AND RAPIDJSON_INCLUDE_DIRS)
        set(_rapidjson_dirs "${RAPIDJSON_INCLUDE_DIRS}")
    else()
        set(_rapidjson_dirs "")
    endif()
    find_path(RapidJSON_INCLUDE_DIR NAMES rapidjson/rapidjson.h
              HINTS ${_rapidjson_dirs}
              DOC "Folder holding rapidjson/rapidjson.h")
    unset(_rapidjson_dirs)
endif()
mark_as_advanced(RapidJSON_INCLUDE_DIR)

if(NOT RapidJSON_VERSION AND RapidJSON_INCLUDE_DIR
   AND EXISTS "${RapidJSON_INCLUDE_DIR}/rapidjson/rapidjson.h")
    file(STRINGS "${RapidJSON_INCLUDE_DIR}/rapidjson/rapidjson.h" _rapidjson_version_lines
         REGEX "^#define RAPIDJSON_(MAJOR|MINOR|PATCH)_VERSION +[0-9]+")
    foreach(_rapidjson_part IN ITEMS MAJOR MINOR PATCH)
        set(_rapidjson_${_rapidjson_part} "")
        foreach(_rapidjson_line IN LISTS _rapidjson_version_lines)
            if(_rapidjson_line MATCHES "^#define RAPIDJSON_${_rapidjson_part}_VERSION +([0-9]+)")
                set(_rapidjson_${_rapidjson_part} "${CMAKE_MATCH_1}")
            endif()
        endforeach()
    endforeach()
    set(RapidJSON_VERSION "${_rapidjson_MAJOR}.${_rapidjson_MINOR}.${_rapidjson_PATCH}")
    unset(_rapidjson_version_lines)
    unset(_rapidjson_part)
    unset(_rapidjson_line)
    unset(_rapidjson_MAJOR)
    unset(_rapidjson_MINOR)
    unset(_rapidjson_PATCH)
endif()

include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(RapidJSON
    REQUIRED_VARS RapidJSON_INCLUDE_DIR
    VERSION_VAR RapidJSON_VERSION)

if(RapidJSON_FOUND AND NOT TARGET RapidJSON::RapidJSON)
    add_library(RapidJSON::RapidJSON INTERFACE IMPORTED)
    set_target_properties(RapidJSON::RapidJSON PROPERTIES
        INTERFACE_INCLUDE_DIRECTORIES "${RapidJSON_INCLUDE_DIR}")
endif()
