// libFuzzer target: arbitrary bytes as the manifest of a distributed checkpoint. The manifest
// has no checksum of its own (it holds the checksums of everything else), so every byte of it
// reaches the JSON parser and the validation: file names that could leave the directory, pieces
// that overlap or leave rows unheld, shapes that overflow, chunk lists of the wrong length.
// Only ckpt::error may escape, and nothing may be allocated in proportion to what a manifest
// declares rather than to its size (fuzz_common.hpp's bound). A manifest that parses must
// encode and parse back to the same text, and every piece it accepts must lie inside its file
// and hold exactly its rows' bytes.
#include "fuzz_common.hpp"

#include <string_view>

namespace {

[[noreturn]] void broken(const char* what) {
    (void)!write(2, "==ckpt-fuzz== ", 14);
    (void)!write(2, what, std::strlen(what));
    (void)!write(2, "\n", 1);
    std::abort();
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const fuzz::alloc_guard guard(size);
    const std::string_view json(reinterpret_cast<const char*>(data), size);
    ckpt::limits lim;
    lim.max_header_bytes = 1 << 20;
    try {
        const ckpt::detail::manifest m = ckpt::detail::parse_manifest(json, lim, "fuzz");
        for (const auto& t : m.tensors) {
            for (const auto& p : t.pieces) {
                const auto& f = m.files.at(static_cast<std::size_t>(p.file));
                if (p.offset > f.bytes || p.bytes > f.bytes - p.offset) {
                    broken("an accepted piece lies outside its file");
                }
                if (p.bytes != (p.row_end - p.row_begin) * t.row_bytes()) {
                    broken("an accepted piece does not hold its rows' bytes");
                }
            }
        }
        const std::string again = ckpt::detail::encode_manifest(m);
        const ckpt::detail::manifest back = ckpt::detail::parse_manifest(again, lim, "fuzz");
        if (ckpt::detail::encode_manifest(back) != again) {
            broken("a parsed manifest does not encode and parse back to itself");
        }
    } catch (const ckpt::error&) {
    }
    return 0;
}
