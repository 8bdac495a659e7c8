// The manifest of a distributed checkpoint: what it records round-trips, and a crafted one is
// refused with a corrupt, limit or version error before anything it declares is allocated.

#include "test_util.hpp"

#include <ckpt/ckpt.hpp>

#include <doctest/doctest.h>

#include <string>

namespace {

using ckpt::detail::manifest;
using ckpt::detail::manifest_piece;
using ckpt::detail::manifest_tensor;

/// Two ranks: a replicated 4x3 float tensor written by rank 1, a sharded 10x2 double tensor
/// (rows 0-4 on rank 0, 4-10 on rank 1), and rank 0's rank-local cursor.
manifest two_rank_manifest() {
    manifest m;
    m.ranks = 2;
    m.chunk_bytes = 4096;
    m.library_version = "0.0.0";
    m.meta = {{"ckpt.step", "7"}};
    for (std::uint64_t r = 0; r < 2; ++r) {
        ckpt::detail::manifest_file f;
        f.name = ckpt::detail::rank_file_name(r, 2);
        f.bytes = 1000;
        f.checksum = 0x0123456789abcdefULL + r;
        f.values = {r, 0, 0, 900, 16, {0x42}};
        m.files.push_back(f);
    }
    manifest_tensor w{"w", ckpt::dtype::f32, 'R', ckpt::placement_kind::replicated, {4, 3}, {}};
    w.pieces.push_back({1, 0, 4, 200, 48, {0x1}});
    manifest_tensor s{"m", ckpt::dtype::f64, 'R', ckpt::placement_kind::sharded, {10, 2}, {}};
    s.pieces.push_back({0, 0, 4, 200, 64, {0x2}});
    s.pieces.push_back({1, 4, 10, 300, 96, {0x3}});
    manifest_tensor c{"cursor", ckpt::dtype::u64, '-', ckpt::placement_kind::rank_local, {1}, {}};
    c.pieces.push_back({0, 0, 1, 400, 8, {0x4}});
    m.tensors = {w, s, c};
    return m;
}

std::string encoded() {
    return ckpt::detail::encode_manifest(two_rank_manifest());
}

/// The manifest's JSON with `from` replaced by `to` (which must occur once).
std::string edit(const std::string& from, const std::string& to) {
    std::string json = encoded();
    const std::size_t at = json.find(from);
    REQUIRE_MESSAGE(at != std::string::npos, from);
    REQUIRE_MESSAGE(json.find(from, at + 1) == std::string::npos, from);
    return json.replace(at, from.size(), to);
}

int parse_error(const std::string& json, const ckpt::limits& lim = {}) {
    return test::error_id([&] { (void)ckpt::detail::parse_manifest(json, lim, "m.json"); });
}

std::string parse_text(const std::string& json) {
    return test::error_text([&] { (void)ckpt::detail::parse_manifest(json, {}, "m.json"); });
}

} // namespace

TEST_CASE("manifest: what is encoded parses back exactly") {
    const manifest m = ckpt::detail::parse_manifest(encoded(), {}, "m.json");
    CHECK(m.ranks == 2);
    CHECK(m.chunk_bytes == 4096);
    CHECK(m.meta.at("ckpt.step") == "7");
    REQUIRE(m.files.size() == 2);
    CHECK(m.files[1].name == "rank-00001-of-00002.ckpt");
    CHECK(m.files[1].checksum == 0x0123456789abcdefULL + 1);
    CHECK(m.files[1].values.offset == 900);
    CHECK(m.files[1].values.chunks == std::vector<std::uint64_t>{0x42});
    REQUIRE(m.tensors.size() == 3);
    CHECK(m.tensors[1].name == "m");
    CHECK(m.tensors[1].kind == ckpt::placement_kind::sharded);
    CHECK(m.tensors[1].shape == std::vector<std::uint64_t>{10, 2});
    CHECK(m.tensors[1].row_bytes() == 16);
    REQUIRE(m.tensors[1].pieces.size() == 2);
    CHECK(m.tensors[1].pieces[1].file == 1);
    CHECK(m.tensors[1].pieces[1].row_begin == 4);
    CHECK(m.tensors[1].pieces[1].row_end == 10);
    CHECK(m.tensors[1].pieces[1].chunks == std::vector<std::uint64_t>{0x3});
    CHECK(m.tensors[2].kind == ckpt::placement_kind::rank_local);
    CHECK(ckpt::detail::encode_manifest(m) == encoded());
}

TEST_CASE("manifest: a piece missing, or pieces that overlap, are corrupt") {
    // Rank 1's piece starts at row 5: row 4 is held by no one.
    CHECK(parse_error(edit(R"("rows":[4,10],"offset":300,"bytes":96)",
                           R"("rows":[5,10],"offset":300,"bytes":80)")) == 206);
    CHECK(parse_text(edit(R"("rows":[4,10],"offset":300,"bytes":96)",
                          R"("rows":[5,10],"offset":300,"bytes":80)"))
              .find("tensor 'm' has no piece holding rows [4, 5)") != std::string::npos);
    // ... at row 3: row 3 is held twice.
    CHECK(parse_text(edit(R"("rows":[4,10],"offset":300,"bytes":96)",
                          R"("rows":[3,10],"offset":300,"bytes":112)"))
              .find("tensor 'm' has pieces that overlap at row 3") != std::string::npos);
    // The last rows are missing.
    CHECK(parse_text(edit(R"("rows":[4,10],"offset":300,"bytes":96)",
                          R"("rows":[4,9],"offset":300,"bytes":80)"))
              .find("tensor 'm' has no piece holding rows [9, 10)") != std::string::npos);
    // Exactly the rows: parses.
    CHECK(parse_error(encoded()) == 0);
    // A piece whose bytes are not its rows' bytes.
    CHECK(parse_error(edit(R"("rows":[4,10],"offset":300,"bytes":96)",
                           R"("rows":[4,10],"offset":300,"bytes":95)")) == 206);
    // A piece past its file's end: one byte over, and exactly at it.
    CHECK(parse_error(edit(R"("rows":[4,10],"offset":300,"bytes":96)",
                           R"("rows":[4,10],"offset":905,"bytes":96)")) == 206);
    CHECK(parse_error(edit(R"("rows":[4,10],"offset":300,"bytes":96)",
                           R"("rows":[4,10],"offset":904,"bytes":96)")) == 0);
    // A replicated tensor in two pieces.
    CHECK(
        parse_error(edit(
            R"("pieces":[{"file":1,"rows":[0,4],"offset":200,"bytes":48,)",
            R"("pieces":[{"file":0,"rows":[0,0],"offset":0,"bytes":0,"chunks":""},{"file":1,"rows":[0,4],"offset":200,"bytes":48,)")) ==
        206);
}

TEST_CASE("manifest: a global shape that overflows is a limit error before any allocation") {
    CHECK(parse_error(edit(R"("shape":[10,2])", R"("shape":[4611686018427387904,2])")) == 504);
    CHECK(parse_error(edit(R"("shape":[10,2])", R"("shape":[1,2,3,4,5,6,7,8,9])")) == 503);
    ckpt::limits small;
    small.max_tensors = 2;
    CHECK(parse_error(encoded(), small) == 502);
    small.max_tensors = 3;
    CHECK(parse_error(encoded(), small) == 0);
    small.max_header_bytes = encoded().size() - 1;
    CHECK(parse_error(encoded(), small) == 501);
}

TEST_CASE("manifest: a file named outside the checkpoint's directory is refused") {
    for (const char* name : {"../x", "/etc/passwd", "a/b", "..", ".", "", "manifest.json"}) {
        CAPTURE(name);
        const std::string json =
            edit(R"("name":"rank-00000-of-00002.ckpt")", std::string(R"("name":")") + name + "\"");
        CHECK(parse_error(json) == 206);
    }
    CHECK(parse_text(edit(R"("name":"rank-00000-of-00002.ckpt")", R"("name":"../x")"))
              .find("file 0 is named '../x', which is not a plain file name inside the "
                    "checkpoint's directory") != std::string::npos);
    // Two files of one name.
    CHECK(parse_error(edit(R"("name":"rank-00001-of-00002.ckpt")",
                           R"("name":"rank-00000-of-00002.ckpt")")) == 206);
    // A piece naming a file that does not exist.
    CHECK(parse_error(edit(R"("file":1,"rows":[4,10])", R"("file":2,"rows":[4,10])")) == 206);
}

TEST_CASE("manifest: structure, chunks and version") {
    CHECK(parse_error("{") == 205);
    CHECK(parse_error("[]") == 206);
    CHECK(parse_error(edit(R"("format":"ckpt-distributed")", R"("format":"other")")) == 206);
    CHECK(parse_error(edit(R"("version":1)", R"("version":2)")) == 401);
    CHECK(parse_error(edit(R"("version":1)", R"("version":0)")) == 402);
    CHECK(parse_error(edit(R"("ranks":2)", R"("ranks":3)")) == 206);
    CHECK(parse_error(edit(R"("ranks":2)", R"("ranks":0)")) == 206);
    // Chunk size at its bounds: 4095 and 2^30 + 1 refused, 4096 accepted (above).
    CHECK(parse_error(edit(R"("chunk_bytes":4096)", R"("chunk_bytes":4095)")) == 206);
    CHECK(parse_error(edit(R"("chunk_bytes":4096)", R"("chunk_bytes":1073741825)")) == 206);
    // One checksum per chunk: 96 bytes is one chunk of 4096, so two checksums are one too many.
    CHECK(parse_error(edit(R"("chunks":"0000000000000003")",
                           R"("chunks":"00000000000000030000000000000003")")) == 206);
    CHECK(parse_error(edit(R"("chunks":"0000000000000003")", R"("chunks":"")")) == 206);
    CHECK(parse_error(edit(R"("chunks":"0000000000000003")", R"("chunks":"000000000000000X")")) ==
          206);
    CHECK(parse_error(edit(R"("dtype":"F64")", R"("dtype":"F128")")) == 206);
    CHECK(parse_error(edit(R"("placement":"sharded")", R"("placement":"striped")")) == 206);
    // A name declared twice.
    CHECK(parse_error(edit(R"("name":"cursor")", R"("name":"w")")) == 206);
}

TEST_CASE("manifest: rank file names") {
    CHECK(ckpt::detail::rank_file_name(0, 1) == "rank-00000-of-00001.ckpt");
    CHECK(ckpt::detail::rank_file_name(3, 4) == "rank-00003-of-00004.ckpt");
    CHECK(ckpt::detail::rank_file_name(123456, 200000) == "rank-123456-of-200000.ckpt");
}
