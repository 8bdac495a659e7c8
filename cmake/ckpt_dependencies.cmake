# ckpt's dependencies: an installed package is tried first (find_package through
# FIND_PACKAGE_ARGS), a pinned release tarball is the fallback. Every declaration is named after
# its *package*, so find_package(<name>) is what gets tried, and FetchContent's redirect makes a
# later find_package(<name>) see the fetched copy. Provides the targets cereal::cereal,
# Eigen3::Eigen, xxHash::xxhash and RapidJSON::RapidJSON.
#
# Needs ${PROJECT_SOURCE_DIR}/cmake on CMAKE_MODULE_PATH (FindxxHash.cmake, FindRapidJSON.cmake).
# The SHA256 values come from conan-center-index's recipes (conandata.yml); see the comment at
# each declaration.

include(FetchContent)

# Where each fallback comes from: cache variables, so a mirror, a local copy or a test's archive
# can stand in for the release tarball (CKPT_<NAME>_URL and CKPT_<NAME>_URL_HASH, ALGO=value).
#
# No SYSTEM in the declarations: CMake 3.25.0 and 3.25.1 (Debian 12's) pass FetchContent's SYSTEM
# on to ExternalProject_Add, which reads it as part of URL_HASH ("URL_HASH is set to
# SHA256=...;SYSTEM"), and the fallback fails before anything is downloaded. The fetched
# targets are marked SYSTEM below instead, which is what the keyword would have done.
macro(ckpt_dependency_source name url hash)
    string(TOUPPER "${name}" _ckpt_upper)
    set(CKPT_${_ckpt_upper}_URL "${url}" CACHE STRING
        "Where ckpt fetches ${name} when no installed ${name} is found")
    set(CKPT_${_ckpt_upper}_URL_HASH "${hash}" CACHE STRING
        "The hash of CKPT_${_ckpt_upper}_URL (ALGO=value)")
    unset(_ckpt_upper)
endmacro()

# conan-center-index recipes/cereal/all/conandata.yml
ckpt_dependency_source(cereal https://github.com/USCiLab/cereal/archive/v1.3.2.tar.gz
    SHA256=16a7ad9b31ba5880dac55d62b5d6f243c3ebc8d46a3514149e56b5e7ea81f85f)
FetchContent_Declare(cereal
    URL "${CKPT_CEREAL_URL}"
    URL_HASH "${CKPT_CEREAL_URL_HASH}"
    FIND_PACKAGE_ARGS 1.3 CONFIG)

# conan-center-index recipes/eigen/all/conandata.yml. No version in the find: Eigen 3.4's
# SameMajorVersion file rejects "3.4...5", and a plain "3.4" would reject Eigen 5. Checked below.
ckpt_dependency_source(Eigen3 https://gitlab.com/libeigen/eigen/-/archive/3.4.0/eigen-3.4.0.tar.bz2
    SHA256=b4c198460eba6f28d34894e3a5710998818515104d6e74e5cc331ce31e46e626)
FetchContent_Declare(Eigen3
    URL "${CKPT_EIGEN3_URL}"
    URL_HASH "${CKPT_EIGEN3_URL_HASH}"
    FIND_PACKAGE_ARGS CONFIG)

# conan-center-index recipes/xxhash/all/conandata.yml; 0.8.1 is also what Debian 12 ships. Module
# mode on purpose: cmake/FindxxHash.cmake tries xxHash's own config, then the bare header.
ckpt_dependency_source(xxHash https://github.com/Cyan4973/xxHash/archive/v0.8.1.tar.gz
    SHA256=3bb6b7d6f30c591dd65aaaff1c8b7a5b94d81687998ca9400082c739a690436c)
FetchContent_Declare(xxHash
    URL "${CKPT_XXHASH_URL}"
    URL_HASH "${CKPT_XXHASH_URL_HASH}"
    SOURCE_SUBDIR cmake_unofficial
    FIND_PACKAGE_ARGS 0.8)

# conan-center-index recipes/rapidjson/all/conandata.yml. RapidJSON 1.1.0's own CMakeLists.txt
# builds docs, examples and tests with -Werror -march=native, so it is not run: SOURCE_SUBDIR
# names a folder without a CMakeLists.txt and only the headers are used.
ckpt_dependency_source(RapidJSON https://github.com/Tencent/rapidjson/archive/v1.1.0.tar.gz
    SHA256=bf7ced29704a1e696fbccf2a2b4ea068e7774fa37f6d7dd4039d0787f8bed98e)
FetchContent_Declare(RapidJSON
    URL "${CKPT_RAPIDJSON_URL}"
    URL_HASH "${CKPT_RAPIDJSON_URL_HASH}"
    SOURCE_SUBDIR include
    FIND_PACKAGE_ARGS)

# The subproject knobs below only matter when a tarball is used; the block keeps them (and
# BUILD_TESTING in particular) out of ckpt's own scope.
block(SCOPE_FOR VARIABLES PROPAGATE Eigen3_FOUND Eigen3_VERSION ckpt_fetched_dependencies)
    # Let option() and set(CACHE) in old-style subprojects honour the normal variables set here.
    set(CMAKE_POLICY_DEFAULT_CMP0077 NEW)
    set(CMAKE_POLICY_DEFAULT_CMP0126 NEW)

    # cereal (#791): headers only, no tests, sandbox, docs or Boost comparison.
    set(JUST_INSTALL_CEREAL ON)
    set(SKIP_PERFORMANCE_COMPARISON ON)
    set(SKIP_PORTABILITY_TEST ON)
    set(BUILD_DOC OFF)
    set(BUILD_SANDBOX OFF)
    set(BUILD_TESTS OFF)
    set(CEREAL_INSTALL ${CKPT_INSTALL})

    # Eigen 3.4.0 reads BUILD_TESTING; later versions read the EIGEN_ ones.
    set(BUILD_TESTING OFF)
    set(EIGEN_BUILD_TESTING OFF)
    set(EIGEN_LEAVE_TEST_IN_ALL_TARGET OFF)
    set(EIGEN_BUILD_DOC OFF)
    set(EIGEN_BUILD_DEMOS OFF)
    set(EIGEN_BUILD_BLAS OFF)
    set(EIGEN_BUILD_LAPACK OFF)
    set(EIGEN_BUILD_PKGCONFIG OFF)

    # xxHash: ckpt uses it header-only, so only a static libxxhash and no xxhsum. It must install
    # its export set when ckpt does, or install(EXPORT ckptTargets) has nothing to point at.
    set(BUILD_SHARED_LIBS OFF)
    set(XXHASH_BUILD_XXHSUM OFF)
    if(CKPT_INSTALL)
        set(XXHASH_BUNDLED_MODE OFF)
    else()
        set(XXHASH_BUNDLED_MODE ON)
    endif()

    FetchContent_MakeAvailable(cereal Eigen3 xxHash RapidJSON)

    set(ckpt_fetched_dependencies "")
    foreach(dep IN ITEMS cereal Eigen3 xxHash RapidJSON)
        string(TOLOWER "${dep}" dep_lower)
        if(NOT "${${dep_lower}_SOURCE_DIR}" STREQUAL "")
            list(APPEND ckpt_fetched_dependencies ${dep})
        endif()
    endforeach()

    # A fetched dependency's headers are system headers to ckpt's users, as an installed one's
    # are: its warnings are not theirs (see the note on SYSTEM above).
    foreach(pair IN ITEMS cereal=cereal::cereal Eigen3=Eigen3::Eigen xxHash=xxHash::xxhash)
        string(REPLACE "=" ";" pair "${pair}")
        list(GET pair 0 dep)
        list(GET pair 1 target)
        if(dep IN_LIST ckpt_fetched_dependencies AND TARGET ${target})
            get_target_property(real ${target} ALIASED_TARGET)
            if(NOT real)
                set(real ${target})
            endif()
            get_target_property(imported ${real} IMPORTED)
            if(NOT imported)
                set_target_properties(${real} PROPERTIES SYSTEM ON)
            endif()
        endif()
    endforeach()

    # Fetched RapidJSON: headers only, so make the target by hand.
    if("RapidJSON" IN_LIST ckpt_fetched_dependencies AND NOT TARGET RapidJSON::RapidJSON)
        add_library(RapidJSON::RapidJSON INTERFACE IMPORTED GLOBAL)
        set_target_properties(RapidJSON::RapidJSON PROPERTIES
            INTERFACE_INCLUDE_DIRECTORIES "${rapidjson_SOURCE_DIR}/include"
            INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${rapidjson_SOURCE_DIR}/include")
    endif()
endblock()

# Checked by hand instead of with a version range (see the Eigen3 declaration above). A fetched
# Eigen 3.4.0 does not set Eigen3_VERSION; the pinned tarball is the right version anyway.
if(Eigen3_FOUND AND DEFINED Eigen3_VERSION AND Eigen3_VERSION VERSION_LESS 3.4)
    message(FATAL_ERROR
        "ckpt needs Eigen 3.4 or newer, found ${Eigen3_VERSION} in ${Eigen3_DIR}. "
        "Point Eigen3_DIR or CMAKE_PREFIX_PATH at a newer Eigen.")
endif()

foreach(target IN ITEMS cereal::cereal Eigen3::Eigen xxHash::xxhash RapidJSON::RapidJSON)
    if(NOT TARGET ${target})
        message(FATAL_ERROR "ckpt: dependency target ${target} was not provided")
    endif()
endforeach()

if(ckpt_fetched_dependencies)
    list(JOIN ckpt_fetched_dependencies ", " fetched)
    message(STATUS "ckpt: not found installed, fetched instead: ${fetched}")
    if(CKPT_INSTALL AND "RapidJSON" IN_LIST ckpt_fetched_dependencies)
        message(WARNING
            "ckpt: RapidJSON was fetched, and its headers are not installed with ckpt. The "
            "installed ckptConfig.cmake needs find_dependency(RapidJSON) to succeed, so install "
            "RapidJSON too (cereal, Eigen and xxHash install themselves next to ckpt).")
    endif()
    unset(fetched)
endif()
