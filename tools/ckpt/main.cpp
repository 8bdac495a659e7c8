// ckpt: look at checkpoints from a shell. `ckpt --help`, `ckpt <command> --help`.

#include "tool.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <map>

int main(int argc, char** argv) {
    using namespace ckpt_tool;
    CLI::App app{"ckpt " CKPT_VERSION_STRING
                 ": inspect, verify, list, compare and export checkpoints written by ckpt"};
    app.require_subcommand(1);
    app.set_version_flag("--version", std::string("ckpt ") + CKPT_VERSION_STRING);

    inspect_args inspect;
    CLI::App* c_inspect = app.add_subcommand(
        "inspect", "What a checkpoint holds: format, metadata, tensors (reads the header only)");
    c_inspect
        ->add_option("FILE", inspect.path,
                     "a checkpoint file or a distributed checkpoint's directory")
        ->required();
    c_inspect->add_flag("--json", inspect.json, "print JSON");
    c_inspect->add_flag("--verify", inspect.verify, "also check every checksum");

    verify_args verify;
    std::string progress = "auto";
    CLI::App* c_verify = app.add_subcommand(
        "verify", "Check every checksum; exit status 0 only when every checkpoint is good");
    c_verify
        ->add_option("PATH", verify.paths,
                     "checkpoint files, distributed checkpoints, or directories of them")
        ->required();
    c_verify
        ->add_option("--progress", progress,
                     "a progress bar on stderr: auto (a terminal, files over 256 MiB), "
                     "always, never")
        ->check(CLI::IsMember({"auto", "always", "never"}));
    c_verify->add_flag("--json", verify.json, "print JSON");

    ls_args ls;
    CLI::App* c_ls = app.add_subcommand(
        "ls", "A manager's directory, read only: checkpoints, damaged and foreign files, the lock");
    c_ls->add_option("DIR", ls.directory, "the directory")->required();
    c_ls->add_option("--prefix", ls.prefix, "only this prefix's checkpoints (default: every one)");
    c_ls->add_option("--best", ls.best_metric,
                     "mark the best by this metric, NAME or NAME:max (default: the save "
                     "policy's on_best metric, from the newest checkpoint)");
    c_ls->add_flag("--json", ls.json, "print JSON");

    diff_args diff;
    CLI::App* c_diff = app.add_subcommand(
        "diff", "Compare two checkpoints tensor by tensor; exit status 0 identical, 1 differ, "
                "2 error");
    c_diff->add_option("A", diff.a, "a checkpoint")->required();
    c_diff->add_option("B", diff.b, "the other")->required();
    c_diff->add_flag("--metadata", diff.metadata,
                     "count metadata differences (step, epoch, time, metrics, tags); otherwise "
                     "they are listed only");
    c_diff
        ->add_option("--atol", diff.atol, "elements within this absolute difference count as equal")
        ->check(CLI::NonNegativeNumber);
    c_diff
        ->add_option("--rtol", diff.rtol,
                     "elements within this difference relative to the larger magnitude "
                     "count as equal")
        ->check(CLI::NonNegativeNumber);
    c_diff
        ->add_option("--ulps", diff.ulps,
                     "elements within this many units in the last place count as equal")
        ->check(CLI::NonNegativeNumber);
    c_diff->add_flag("--json", diff.json, "print JSON");
    c_diff->add_flag("--no-verify", diff.no_verify, "skip the checksums");

    export_args exp;
    CLI::App* c_export = app.add_subcommand(
        "export", "Write the tensors for other tools: .npy files, or plain safetensors");
    c_export->add_option("FILE", exp.path, "a checkpoint file or a distributed checkpoint")
        ->required();
    c_export->add_option("--to", exp.to, "a directory (--npy) or FILE.safetensors (--plain)")
        ->required();
    c_export->add_flag("--npy", exp.npy, "one NumPy .npy file per tensor");
    c_export->add_flag("--plain", exp.plain,
                       "a safetensors file of the tensors alone, without ckpt's values entry "
                       "and metadata");
    c_export->add_flag("--upcast", exp.upcast,
                       "write BF16 and F8 tensors, which NumPy has no type for, as float32");
    c_export->add_flag("--no-verify", exp.no_verify, "skip the checksums");

    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        const int status = app.exit(e);
        return status == 0 ? exit_ok : exit_error;
    }
    verify.progress = progress == "always"  ? progress_mode::always
                      : progress == "never" ? progress_mode::never
                                            : progress_mode::automatic;

    const terminal term = terminal::detect();
    const std::string command = app.get_subcommands().front()->get_name();
    try {
        if (command == "inspect") return run_inspect(inspect, term);
        if (command == "verify") return run_verify(verify, term);
        if (command == "ls") return run_ls(ls, term);
        if (command == "diff") return run_diff(diff, term);
        return run_export(exp, term);
    } catch (const std::exception& e) {
        print_error(command, e.what());
        return exit_error;
    }
}
