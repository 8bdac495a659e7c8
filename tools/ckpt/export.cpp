// ckpt export FILE --to DIR --npy: every tensor as a NumPy .npy file;
// ckpt export FILE --to OUT.safetensors --plain: the tensors alone, as plain safetensors.

#include "tool.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <optional>
#include <stdexcept>
#include <unistd.h>

namespace ckpt_tool {

namespace {

/// NumPy's type string for a dtype (little-endian), or nothing when NumPy has none.
std::optional<std::string> npy_descr(ckpt::dtype t) {
    switch (t) {
    case ckpt::dtype::boolean: return "|b1";
    case ckpt::dtype::u8: return "|u1";
    case ckpt::dtype::i8: return "|i1";
    case ckpt::dtype::u16: return "<u2";
    case ckpt::dtype::i16: return "<i2";
    case ckpt::dtype::f16: return "<f2";
    case ckpt::dtype::u32: return "<u4";
    case ckpt::dtype::i32: return "<i4";
    case ckpt::dtype::f32: return "<f4";
    case ckpt::dtype::u64: return "<u8";
    case ckpt::dtype::i64: return "<i8";
    case ckpt::dtype::f64: return "<f8";
    case ckpt::dtype::bf16:
    case ckpt::dtype::f8_e4m3:
    case ckpt::dtype::f8_e5m2: break;
    }
    return std::nullopt;
}

/// A tensor's name as a file name: the characters [A-Za-z0-9._@-] kept, others '_', never
/// starting with '.'.
std::string file_name_of(const std::string& name) {
    std::string out;
    for (const char c : name) {
        const bool keep = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '@' || c == '-';
        out += keep ? c : '_';
    }
    if (out.empty() || out[0] == '.') out.insert(out.begin(), '_');
    return out + ".npy";
}

/// The .npy header (format version 1.0): magic, version, length, then the dictionary padded
/// with spaces and a newline so that the data starts at a multiple of 64 bytes.
std::string npy_header(const std::string& descr, bool fortran,
                       const std::vector<std::uint64_t>& shape) {
    std::string dict = "{'descr': '" + descr +
                       "', 'fortran_order': " + (fortran ? "True" : "False") + ", 'shape': (";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        dict += std::to_string(shape[i]);
        dict += shape.size() == 1 ? "," : i + 1 < shape.size() ? ", " : "";
    }
    dict += "), }";
    const std::size_t unpadded = 10 + dict.size() + 1;
    dict.append((64 - unpadded % 64) % 64, ' ');
    dict += '\n';
    if (dict.size() > 0xFFFF) throw std::runtime_error("the .npy header is too long");
    std::string out = "\x93NUMPY";
    out += '\x01';
    out += '\x00';
    out += static_cast<char>(dict.size() & 0xFF);
    out += static_cast<char>(dict.size() >> 8);
    return out + dict;
}

/// Writes `parts` to `path` through a temporary file renamed into place, so that a file of
/// that name is always whole.
void write_file(const std::filesystem::path& path,
                const std::vector<std::pair<const void*, std::size_t>>& parts) {
    const std::string temp = path.string() + ".tmp-" + std::to_string(::getpid());
    const auto fail = [&](const char* what) {
        const int e = errno;
        ::unlink(temp.c_str());
        throw std::runtime_error(std::string(what) + " '" + temp + "' failed: " + std::strerror(e));
    };
    const int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) fail("create");
    for (const auto& [data, size] : parts) {
        const auto* p = static_cast<const char*>(data);
        std::size_t left = size;
        while (left > 0) {
            const ssize_t n = ::write(fd, p, left);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                ::close(fd);
                fail("write");
            }
            p += n;
            left -= static_cast<std::size_t>(n);
        }
    }
    if (::fsync(fd) != 0) {
        ::close(fd);
        fail("fsync");
    }
    if (::close(fd) != 0) fail("close");
    if (::rename(temp.c_str(), path.c_str()) != 0) fail("rename");
}

int export_npy(const ckpt::reader& r, const export_args& args) {
    const auto& tensors = r.info().tensors;
    // Everything is checked before anything is written.
    std::map<std::string, std::string> files; // file name -> tensor name
    for (const ckpt::tensor_info& t : tensors) {
        if (!npy_descr(t.type) && !args.upcast) {
            print_error("export", "tensor '" + ckpt::display_name(t) + "' is " +
                                      std::string(ckpt::to_string(t.type)) +
                                      ", which NumPy has no type for: nothing was written; pass "
                                      "--upcast to write such tensors as float32 (exactly)");
            return exit_error;
        }
        const std::string name = file_name_of(ckpt::display_name(t));
        if (const auto [it, fresh] = files.emplace(name, ckpt::display_name(t)); !fresh) {
            print_error("export", "tensors '" + it->second + "' and '" + ckpt::display_name(t) +
                                      "' would both be written to '" + name +
                                      "': nothing was written");
            return exit_error;
        }
    }
    std::filesystem::create_directories(args.to);
    for (const ckpt::tensor_info& t : tensors) {
        std::vector<std::byte> bytes = r.read(t);
        std::optional<std::string> descr = npy_descr(t.type);
        if (!descr) { // --upcast: BF16 and the F8 kinds hold only values float32 holds
            const std::uint64_t n = t.bytes / ckpt::size_of(t.type);
            std::vector<std::byte> wide(static_cast<std::size_t>(n * 4));
            for (std::uint64_t i = 0; i < n; ++i) {
                double v = 0;
                if (t.type == ckpt::dtype::bf16) {
                    std::uint16_t b = 0;
                    std::memcpy(&b, bytes.data() + i * 2, 2);
                    v = decode_float(b, 8, 7, false);
                } else {
                    const auto b = static_cast<std::uint8_t>(bytes[static_cast<std::size_t>(i)]);
                    v = t.type == ckpt::dtype::f8_e4m3 ? decode_float(b, 4, 3, true)
                                                       : decode_float(b, 5, 2, false);
                }
                const auto f = static_cast<float>(v);
                std::memcpy(wide.data() + i * 4, &f, 4);
            }
            bytes = std::move(wide);
            descr = "<f4";
        }
        // The bytes are the row-major view; a column-major tensor is the same bytes in
        // Fortran order with its dimensions the other way round.
        std::vector<std::uint64_t> shape = t.shape;
        const bool fortran = t.order == 'C' && shape.size() > 1;
        if (fortran) std::reverse(shape.begin(), shape.end());
        const std::string header = npy_header(*descr, fortran, shape);
        const std::filesystem::path path = args.to / file_name_of(ckpt::display_name(t));
        write_file(path, {{header.data(), header.size()}, {bytes.data(), bytes.size()}});
        std::printf("%s  %s %s%s\n", path.c_str(), descr->c_str(), shape_text(shape).c_str(),
                    fortran ? " (Fortran order)" : "");
    }
    return exit_ok;
}

} // namespace

int run_export(const export_args& args, const terminal&) {
    const bool to_safetensors = args.to.extension() == ".safetensors";
    if (args.npy == to_safetensors) {
        print_error("export", args.npy ? "--npy writes a directory of .npy files, not '" +
                                             args.to.string() + "'"
                                       : "say what to write: --npy (a directory of .npy files) "
                                         "or --to FILE.safetensors --plain");
        return exit_error;
    }
    if (to_safetensors && !args.plain) {
        print_error("export", "a ckpt checkpoint already is a safetensors file (copy it as it "
                              "is); --plain writes one without ckpt's values entry and metadata");
        return exit_error;
    }
    ckpt::reader_options options;
    options.verify = !args.no_verify;
    const ckpt::reader r(args.path, options);
    if (args.npy) return export_npy(r, args);
    const std::uint64_t bytes = ckpt::save_safetensors(r, args.to);
    std::printf("%s  %zu tensors, %s\n", args.to.c_str(), r.info().tensors.size(),
                human_bytes(bytes).c_str());
    return exit_ok;
}

} // namespace ckpt_tool
