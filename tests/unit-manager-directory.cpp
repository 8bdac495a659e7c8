// scan_directory (ckpt/manager/directory.hpp): what a directory of checkpoints holds, exactly as
// a manager sees it, read without a lock and without changing anything; the names a manager
// writes; the backend's list() as the one way a directory is read.
#include "manager_test_util.hpp"

#include <doctest/doctest.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <unistd.h>

namespace fs = std::filesystem;

namespace directory_test {

std::vector<fs::path> names_in(const fs::path& dir) {
    std::vector<fs::path> out;
    for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
}

/// A directory with one of everything: three checkpoints (steps 2, 4 and 6), a damaged one of
/// ckpt's (step 8), a foreign file with a checkpoint's name (step 9), a crashed save's temporary
/// file, and names a manager does not own.
struct mixed_directory {
    fs::path dir;
    std::vector<std::uint64_t> bytes;

    explicit mixed_directory(const std::string& name) : dir(test::scratch(name)) {
        {
            ckpt::manager m(dir, ckpt::every_steps(2));
            test::train_state st;
            for (std::int64_t s = 2; s <= 8; s += 2) {
                ckpt::metadata meta = test::at(s, {{"loss", 1.0 / static_cast<double>(s)}});
                meta.epoch = s / 4;
                meta.time = std::chrono::system_clock::time_point(std::chrono::seconds(100 + s));
                REQUIRE(m.step(st, meta).saved);
            }
        }
        for (std::int64_t s = 2; s <= 6; s += 2) {
            bytes.push_back(fs::file_size(dir / ckpt::detail::checkpoint_file_name("ckpt", s)));
        }
        fs::resize_file(dir / "ckpt-000000000008.ckpt", 100); // damaged: ckpt's header start
        test::write_file(dir / "ckpt-000000000009.ckpt", {std::byte{'h'}, std::byte{'i'}});
        test::write_file(dir / "ckpt-000000000004.ckpt.tmp-123-0", {std::byte{0}});
        test::write_file(dir / "ckpt-7.ckpt", {std::byte{0}});             // not padded
        test::write_file(dir / "other-000000000001.ckpt", {std::byte{0}}); // another prefix
        test::write_file(dir / "ckpt-000000000005.ckpt.tmp-x-0", {std::byte{0}});
        test::write_file(dir / "notes.txt", {std::byte{0}});
        fs::create_directory(dir / "ckpt-000000000011.ckpt");
        fs::create_symlink(dir / "ckpt-000000000002.ckpt", dir / "ckpt-000000000010.ckpt");
    }
};

} // namespace directory_test

using directory_test::mixed_directory;

TEST_CASE("scan_directory sorts every file of a directory into exactly one list") {
    const mixed_directory d("scan-mixed");
    const auto before = directory_test::names_in(d.dir);
    const ckpt::directory_listing l = ckpt::scan_directory(d.dir);
    CHECK(l.directory == d.dir);
    REQUIRE(l.checkpoints.size() == 3);
    for (std::size_t i = 0; i < 3; ++i) {
        const auto& e = l.checkpoints[i];
        const auto step = static_cast<std::int64_t>(2 * (i + 1));
        CHECK(e.path == d.dir / ckpt::detail::checkpoint_file_name("ckpt", step));
        CHECK(e.step == step);
        CHECK(e.epoch == step / 4);
        CHECK(e.time == std::chrono::system_clock::time_point(std::chrono::seconds(100 + step)));
        CHECK(e.metrics ==
              std::map<std::string, double>{{"loss", 1.0 / static_cast<double>(step)}});
        CHECK(e.bytes == d.bytes[i]);
        CHECK(e.latest == (i == 2));
        CHECK_FALSE(e.best);
    }
    CHECK(l.checkpoint_bytes() == d.bytes[0] + d.bytes[1] + d.bytes[2]);
    REQUIRE(l.unreadable.size() == 1); // damaged: ckpt's header start, then cut
    CHECK(l.unreadable[0].path == d.dir / "ckpt-000000000008.ckpt");
    CHECK(l.unreadable[0].error_id == ckpt::errc::corrupt_truncated_header);
    CHECK(l.unreadable[0].reason.find("the file is truncated or damaged") != std::string::npos);
    CHECK(l.foreign == std::vector<fs::path>{d.dir / "ckpt-000000000009.ckpt"}); // "hi"
    CHECK(l.temporaries == std::vector<fs::path>{d.dir / "ckpt-000000000004.ckpt.tmp-123-0"});
    CHECK(l.others == std::vector<fs::path>{d.dir / "ckpt-000000000005.ckpt.tmp-x-0",
                                            d.dir / "ckpt-000000000010.ckpt",
                                            d.dir / "ckpt-000000000011.ckpt", d.dir / "ckpt-7.ckpt",
                                            d.dir / "notes.txt",
                                            d.dir / "other-000000000001.ckpt"});
    CHECK_FALSE(l.lock.has_value()); // the manager that wrote them released its lock
    CHECK(directory_test::names_in(d.dir) == before); // nothing deleted, nothing created
}

TEST_CASE("scan_directory beside a manager that holds the directory: no lock taken, same index") {
    const mixed_directory d("scan-beside");
    ckpt::manager m(d.dir, ckpt::every_steps(2), ckpt::keep_all());
    CHECK(m.cleaned() == std::vector<fs::path>{d.dir / "ckpt-000000000004.ckpt.tmp-123-0"});
    const ckpt::directory_listing l = ckpt::scan_directory(d.dir);
    REQUIRE(l.lock.has_value());
    CHECK(*l.lock == ckpt::lock_holder{::getpid(), true, true});
    CHECK(l.checkpoints == m.list()); // no ranked metric: no best flag on either
    CHECK(l.temporaries.empty());
    CHECK(l.unreadable == m.skipped());
}

TEST_CASE("scan_directory of a missing directory, or one the backend cannot list, is io_error") {
    const auto root = test::scratch("scan-missing");
    try {
        (void)ckpt::scan_directory(root / "nope");
        FAIL("no error");
    } catch (const ckpt::io_error& e) {
        CHECK(e.id() == ckpt::errc::io_read);
        CHECK(e.operation() == "list directory");
        CHECK(e.path() == (root / "nope").string());
        CHECK(e.code().value() == ENOENT);
    }
    struct failing_list final : test::posix_forwarding {
        int list(const char*, std::vector<ckpt::io::dir_entry>&) override {
            errno = EIO;
            return -1;
        }
    } io;
    CHECK(test::error_id([&] {
              (void)ckpt::scan_directory(root, {"ckpt", &io, {}});
          }) == ckpt::errc::io_read);
    // The manager reads its directory the same way.
    ckpt::manager_options o;
    o.backend = &io;
    CHECK(test::error_id([&] {
              ckpt::manager m(root, ckpt::every_steps(1), ckpt::keep_all(), o);
          }) == ckpt::errc::io_read);
    CHECK(test::error_id([&] {
              (void)ckpt::scan_directory(root, {"", nullptr, {}});
          }) == ckpt::errc::usage_argument);
    CHECK(test::error_id([&] {
              (void)ckpt::scan_directory(root, {"a/b", nullptr, {}});
          }) == ckpt::errc::usage_argument);
}

TEST_CASE("the backend's list() gives every name but . and .., with its kind") {
    const auto dir = test::scratch("scan-list");
    test::write_file(dir / "file", {std::byte{0}});
    fs::create_directory(dir / "sub");
    fs::create_symlink(dir / "file", dir / "link");
    std::vector<ckpt::io::dir_entry> out{{"stale", ckpt::io::dir_entry::kind::other}};
    REQUIRE(ckpt::io::default_backend().list(dir.c_str(), out) == 0);
    std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
    using kind = ckpt::io::dir_entry::kind;
    CHECK(out == std::vector<ckpt::io::dir_entry>{
                     {"file", kind::regular}, {"link", kind::symlink}, {"sub", kind::directory}});
    CHECK(ckpt::io::default_backend().list((dir / "none").c_str(), out) == -1);
    CHECK(errno == ENOENT);
    CHECK(out.empty());
}

TEST_CASE("checkpoint names: 12 digits at least, and only exact names are a manager's") {
    using ckpt::detail::checkpoint_file_name;
    using ckpt::detail::step_of_name;
    CHECK(checkpoint_file_name("ckpt", 0) == "ckpt-000000000000.ckpt");
    CHECK(checkpoint_file_name("run", 999'999'999'999) == "run-999999999999.ckpt");
    CHECK(checkpoint_file_name("run", 1'000'000'000'000) == "run-1000000000000.ckpt");
    CHECK(step_of_name("run-000000000042.ckpt", "run", ".ckpt") == 42);
    CHECK(step_of_name("run-.ckpt", "run", ".ckpt") == std::nullopt);
    CHECK(step_of_name("run-4x.ckpt", "run", ".ckpt") == std::nullopt);
    CHECK(step_of_name("runs-1.ckpt", "run", ".ckpt") == std::nullopt);
    CHECK(step_of_name("run-123456789012345678.ckpt", "run", ".ckpt") == 123456789012345678);
    CHECK(step_of_name("run-1234567890123456789.ckpt", "run", ".ckpt") == std::nullopt); // 19
    CHECK(ckpt::detail::is_temp_suffix("12-0"));
    CHECK_FALSE(ckpt::detail::is_temp_suffix("12-"));
    CHECK_FALSE(ckpt::detail::is_temp_suffix("-0"));
    CHECK_FALSE(ckpt::detail::is_temp_suffix("12"));
}

TEST_CASE("a file with a checkpoint's name that is not a ckpt file is foreign, not damaged") {
    const auto dir = test::scratch("scan-foreign");
    test::train_state st;
    {
        ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_all());
        for (std::int64_t s = 1; s <= 2; ++s) REQUIRE(m.step(st, test::at(s)).saved);
    }
    // A text file: its first 8 bytes read as a header length of 0x6e696c2074736966 bytes.
    const std::string text = "first line of some notes\nand a second\n";
    const std::vector<std::byte> notes(reinterpret_cast<const std::byte*>(text.data()),
                                       reinterpret_cast<const std::byte*>(text.data()) +
                                           text.size());
    test::write_file(dir / "ckpt-000000000003.ckpt", notes);
    // A plain safetensors file (a valid header without ckpt's checksum), and an empty file.
    test::write_file(dir / "ckpt-000000000004.ckpt",
                     test::craft(R"({"__metadata__":{"a":"b"}})", {}, false));
    test::write_file(dir / "ckpt-000000000005.ckpt", {});
    // A damaged checkpoint: ckpt's, with its header cut.
    fs::copy_file(dir / "ckpt-000000000002.ckpt", dir / "ckpt-000000000006.ckpt");
    fs::resize_file(dir / "ckpt-000000000006.ckpt", 100);
    const std::vector<fs::path> foreign = {dir / "ckpt-000000000003.ckpt",
                                           dir / "ckpt-000000000004.ckpt",
                                           dir / "ckpt-000000000005.ckpt"};

    const ckpt::directory_listing l = ckpt::scan_directory(dir);
    CHECK(l.foreign == foreign);
    REQUIRE(l.unreadable.size() == 1);
    CHECK(l.unreadable[0].path == dir / "ckpt-000000000006.ckpt");
    CHECK(l.unreadable[0].error_id == ckpt::errc::corrupt_truncated_header);

    std::vector<ckpt::skipped_checkpoint> reported;
    ckpt::manager_options o;
    o.on_skipped = [&](const ckpt::skipped_checkpoint& s) { reported.push_back(s); };
    ckpt::manager m(dir, ckpt::every_steps(1), ckpt::keep_last(1), o);
    CHECK(m.foreign() == foreign);
    REQUIRE(m.skipped().size() == 1); // the damaged checkpoint only: no 501 for the text file
    CHECK(m.skipped()[0].path == dir / "ckpt-000000000006.ckpt");
    CHECK(m.restore_latest(st).value().step == 2);
    REQUIRE(reported.size() == 1);
    CHECK(reported[0] == m.skipped()[0]);
    REQUIRE(m.skipped().size() == 1);
    // Never written over: a save of its step is refused, and the file is as it was.
    const std::string refused = test::error_text([&] { m.step(st, test::at(3)); });
    CHECK(refused.starts_with("[ckpt.usage.604] '" + (dir / "ckpt-000000000003.ckpt").string() +
                              "' has this manager's name but was not written by ckpt"));
    // Never deleted: keep_last(1) removes 1 and 2 (and, once replaced, 6) but no foreign file.
    for (const std::int64_t s : {6, 7}) REQUIRE(m.step(st, test::at(s)).saved);
    CHECK(directory_test::names_in(dir) ==
          std::vector<fs::path>{"ckpt-000000000003.ckpt", "ckpt-000000000004.ckpt",
                                "ckpt-000000000005.ckpt", "ckpt-000000000007.ckpt", "ckpt.lock"});
    CHECK(test::read_file(dir / "ckpt-000000000003.ckpt") == notes);
    CHECK(fs::file_size(dir / "ckpt-000000000005.ckpt") == 0);
    CHECK(m.foreign() == foreign);
    CHECK(ckpt::scan_directory(dir).unreadable.empty()); // step 6's save replaced the damaged
    CHECK(ckpt::scan_directory(dir).foreign == foreign);
}
