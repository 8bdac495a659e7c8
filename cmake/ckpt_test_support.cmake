# Shared by tests/ and examples/: doctest, the runner object library, ckpt_add_doctest() and
# ckpt_add_doctest_program().
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

# Each test runs in its own scratch folder, emptied before every ctest run. (The functions below
# do not read CKPT_SCRATCH_DIR: it is set only in the directory that included this file first.)
set(CKPT_SCRATCH_DIR "${PROJECT_BINARY_DIR}/scratch")
add_test(NAME ckpt_scratch_clean
    COMMAND "${CMAKE_COMMAND}" "-DSCRATCH_DIR=${CKPT_SCRATCH_DIR}"
            -P "${PROJECT_SOURCE_DIR}/cmake/ckpt_clean_scratch.cmake")
set_tests_properties(ckpt_scratch_clean PROPERTIES FIXTURES_SETUP ckpt_scratch)

# Tests that run threads of their own (the asynchronous save, the distributed manager's
# background writes beside MPI's own threads). They get the label `concurrency` and the target
# ckpt_concurrency_tests builds them: the tsan preset builds and runs only these, under
# ThreadSanitizer. Add a test by its name here; a name not defined (yet) is ignored.
set_property(GLOBAL PROPERTY ckpt_concurrency_tests
    unit-async
    unit-release
    mpi-np2
    mpi-np2-funneled)
add_custom_target(ckpt_concurrency_tests)

# ckpt_add_doctest(<name> SOURCE <file.cpp> LIBRARY <ckpt target> [LABELS <label>...])
# Builds the doctest program <name> (runner, warnings as errors, CKPT_TEST_DATA_DIR) and
# registers it as the test <name>, run in the scratch folder scratch/<name>.
function(ckpt_add_doctest name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "SOURCE;LIBRARY" "LABELS")
    _ckpt_doctest_executable(${name} SOURCES "${arg_SOURCE}" LIBRARY ${arg_LIBRARY})
    _ckpt_doctest_test(${name} PROGRAM ${name} LABELS ${arg_LABELS})
endfunction()

# ckpt_add_doctest_program(<program> SOURCES <file.cpp>... LIBRARY <ckpt target>
#                          [PREFIX <prefix>] [LABELS <label>...])
# Builds one doctest program <program> from all SOURCES as a unity build: one translation unit,
# so ckpt, cereal, Eigen and doctest are parsed and their code generated once instead of once
# per file (file-local names must therefore differ between the files). Registers one test per
# source file, <prefix><file name without .cpp>, that runs only that file's test cases
# (--source-file) in its own scratch folder; a test that selects no test case fails. A source
# that replaces a global allocation function (operator new, malloc) must not be among SOURCES:
# the replacement would hold for every file of the program.
#
# FIRST: a long compile that should start at once. make -j sets aside a target whose
# dependencies are not built yet and may come back to it only at the end, which left the longest
# compile, the unity build, running alone after everything else. So the unity file is an object
# library of its own that depends on no other target (against ckpt::ckpt_compiled it compiles
# with CKPT_COMPILED against the headers), and only the program's link waits for the runner and
# the library.
function(ckpt_add_doctest_program program)
    cmake_parse_arguments(PARSE_ARGV 1 arg "FIRST" "LIBRARY;PREFIX" "SOURCES;LABELS")
    if(arg_FIRST)
        set(objects ${program}_unity)
        add_library(${objects} OBJECT ${arg_SOURCES})
        if(arg_LIBRARY STREQUAL "ckpt::ckpt_compiled")
            target_link_libraries(${objects} PRIVATE ckpt::ckpt)
            target_compile_definitions(${objects} PRIVATE CKPT_COMPILED)
        else() # an interface library: nothing to build
            target_link_libraries(${objects} PRIVATE ${arg_LIBRARY})
        endif()
        target_link_libraries(${objects} PRIVATE doctest::doctest ckpt_warnings)
        target_compile_definitions(${objects} PRIVATE
            "CKPT_TEST_DATA_DIR=\"${PROJECT_SOURCE_DIR}/tests/data\"")
        set_target_properties(${objects} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 0)
        _ckpt_doctest_executable(${program} SOURCES $<TARGET_OBJECTS:${objects}>
            LIBRARY ${arg_LIBRARY})
    else()
        _ckpt_doctest_executable(${program} SOURCES ${arg_SOURCES} LIBRARY ${arg_LIBRARY})
    endif()
    set_target_properties(${program} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE 0)
    foreach(source IN LISTS arg_SOURCES)
        get_filename_component(file "${source}" NAME)
        get_filename_component(stem "${source}" NAME_WE)
        # doctest matches the pattern against __FILE__ (the full path) with * and ?.
        _ckpt_doctest_test(${arg_PREFIX}${stem} PROGRAM ${program} LABELS ${arg_LABELS}
            ARGS "--source-file=*/${file}")
        set_tests_properties(${arg_PREFIX}${stem} PROPERTIES
            FAIL_REGULAR_EXPRESSION "test cases: +0 \\|")
    endforeach()
endfunction()

# The doctest program <name>: SOURCES, the runner, LIBRARY, warnings as errors and
# CKPT_TEST_DATA_DIR.
function(_ckpt_doctest_executable name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "LIBRARY" "SOURCES")
    add_executable(${name} ${arg_SOURCES})
    target_link_libraries(${name} PRIVATE ckpt_test_main ${arg_LIBRARY} ckpt_warnings)
    target_compile_definitions(${name} PRIVATE
        "CKPT_TEST_DATA_DIR=\"${PROJECT_SOURCE_DIR}/tests/data\"")
endfunction()

# The test <name>: runs <program> [ARGS...] in the scratch folder scratch/<name>.
function(_ckpt_doctest_test name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "PROGRAM" "LABELS;ARGS")
    set(scratch "${PROJECT_BINARY_DIR}/scratch/${name}")
    file(MAKE_DIRECTORY "${scratch}")
    add_test(NAME ${name} COMMAND ${arg_PROGRAM} ${arg_ARGS} WORKING_DIRECTORY "${scratch}")
    set(labels ${arg_LABELS})
    get_property(concurrency_tests GLOBAL PROPERTY ckpt_concurrency_tests)
    if(name IN_LIST concurrency_tests)
        list(APPEND labels concurrency)
        add_dependencies(ckpt_concurrency_tests ${arg_PROGRAM})
    endif()
    set_tests_properties(${name} PROPERTIES
        LABELS "${labels}"
        FIXTURES_REQUIRED ckpt_scratch)
endfunction()

# ckpt_add_mpi_test(<name> <ranks> <program> [ARGS...]): runs the doctest program (built with
# tests/mpi/main.cpp as its runner) on <ranks> ranks under mpiexec, in the scratch folder
# scratch/<name>, with a timeout: ranks that wait for each other forever fail the test instead
# of the run. OpenMPI is told through the environment to run as root and on more ranks than
# cores (both needed on CI machines); other MPIs ignore those variables.
function(ckpt_add_mpi_test name ranks program)
    ckpt_mpi_environment(environment)
    set(scratch "${PROJECT_BINARY_DIR}/scratch/${name}")
    file(MAKE_DIRECTORY "${scratch}")
    add_test(NAME ${name}
        COMMAND "${MPIEXEC_EXECUTABLE}" ${MPIEXEC_NUMPROC_FLAG} ${ranks} ${MPIEXEC_PREFLAGS}
                "$<TARGET_FILE:${program}>" ${MPIEXEC_POSTFLAGS} ${ARGN}
        WORKING_DIRECTORY "${scratch}")
    set(labels mpi)
    get_property(concurrency_tests GLOBAL PROPERTY ckpt_concurrency_tests)
    if(name IN_LIST concurrency_tests)
        list(APPEND labels concurrency)
        add_dependencies(ckpt_concurrency_tests ${program})
    endif()
    set_tests_properties(${name} PROPERTIES
        LABELS "${labels}"
        ENVIRONMENT "${environment}"
        TIMEOUT 120
        PROCESSORS ${ranks}
        FIXTURES_REQUIRED ckpt_scratch)
endfunction()

# ckpt_mpi_environment(<var>): the environment of a test that runs mpiexec.
function(ckpt_mpi_environment var)
    set(environment
        OMPI_ALLOW_RUN_AS_ROOT=1
        OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
        OMPI_MCA_rmaps_base_oversubscribe=1
        # One machine: no network interfaces to probe, no warnings about them.
        OMPI_MCA_btl=self,vader
        # For the asan preset: OpenMPI's own leaks are suppressed (tests/mpi/lsan.supp names
        # only OpenMPI's libraries and components), with its and PMIx's components kept loaded
        # so that their frames have names, and full stacks (OpenMPI is built without frame
        # pointers, so the fast unwinder stops at its first frame).
        OMPI_MCA_mca_base_component_disable_dlclose=1
        PMIX_MCA_mca_base_component_disable_dlclose=1
        "LSAN_OPTIONS=suppressions=${PROJECT_SOURCE_DIR}/tests/mpi/lsan.supp:print_suppressions=0:fast_unwind_on_malloc=0")
    set(${var} "${environment}" PARENT_SCOPE)
endfunction()
