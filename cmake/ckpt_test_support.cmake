# Shared by tests/ and examples/: doctest, the runner object library and ckpt_add_doctest().
include_guard(GLOBAL)

include(FetchContent)

# doctest: the installed package first (find_package(doctest 2.4 CONFIG)), the 2.4.9 release
# tarball as the fallback. SHA256 from conan-center-index recipes/doctest/2.x.x/conandata.yml.
FetchContent_Declare(doctest
    URL https://github.com/doctest/doctest/archive/v2.4.9.tar.gz
    URL_HASH SHA256=19b2df757f2f3703a5e63cee553d85596875f06d91a3333acd80a969ef210856
    SYSTEM
    FIND_PACKAGE_ARGS 2.4 CONFIG)
block(SCOPE_FOR VARIABLES)
    set(CMAKE_POLICY_DEFAULT_CMP0077 NEW)
    set(DOCTEST_WITH_TESTS OFF)
    set(DOCTEST_WITH_MAIN_IN_STATIC_LIB OFF)
    set(DOCTEST_NO_INSTALL ON)
    FetchContent_MakeAvailable(doctest)
endblock()

# tests/main.cpp, compiled once. doctest is PUBLIC so that every program linking the runner sees
# it, whichever directory it is defined in.
add_library(ckpt_test_main OBJECT "${PROJECT_SOURCE_DIR}/tests/main.cpp")
target_compile_features(ckpt_test_main PUBLIC cxx_std_20)
target_link_libraries(ckpt_test_main PUBLIC doctest::doctest PRIVATE ckpt_warnings)

# Each test runs in its own scratch folder, emptied before every ctest run.
set(CKPT_SCRATCH_DIR "${PROJECT_BINARY_DIR}/scratch")
add_test(NAME ckpt_scratch_clean
    COMMAND "${CMAKE_COMMAND}" "-DSCRATCH_DIR=${CKPT_SCRATCH_DIR}"
            -P "${PROJECT_SOURCE_DIR}/cmake/ckpt_clean_scratch.cmake")
set_tests_properties(ckpt_scratch_clean PROPERTIES FIXTURES_SETUP ckpt_scratch)

# ckpt_add_doctest(<name> SOURCE <file.cpp> LIBRARY <ckpt target> [LABELS <label>...])
# Builds the doctest program <name> (runner, warnings as errors, CKPT_TEST_DATA_DIR) and
# registers it as the test <name>, run in the scratch folder scratch/<name>.
function(ckpt_add_doctest name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "SOURCE;LIBRARY" "LABELS")
    add_executable(${name} "${arg_SOURCE}")
    target_link_libraries(${name} PRIVATE ckpt_test_main ${arg_LIBRARY} ckpt_warnings)
    target_compile_definitions(${name} PRIVATE
        "CKPT_TEST_DATA_DIR=\"${PROJECT_SOURCE_DIR}/tests/data\"")
    set(scratch "${CKPT_SCRATCH_DIR}/${name}")
    file(MAKE_DIRECTORY "${scratch}")
    add_test(NAME ${name} COMMAND ${name} WORKING_DIRECTORY "${scratch}")
    set_tests_properties(${name} PROPERTIES
        LABELS "${arg_LABELS}"
        FIXTURES_REQUIRED ckpt_scratch)
endfunction()
