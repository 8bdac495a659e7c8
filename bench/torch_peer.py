#!/usr/bin/env python3
"""torch.save / torch.load of a training checkpoint shaped like bench-suite's state.

bench-suite (bench/suite/) runs this script to compare ckpt with what a PyTorch user would
write instead:

    torch.save({"model": model.state_dict(), "optimizer": adam.state_dict()}, path)
    fsync(path)                                                   # as a careful user would
    ck = torch.load(path)
    model.load_state_dict(ck["model"]); adam.load_state_dict(ck["optimizer"])

The model mirrors the C++ state tensor for tensor, all float32:
    embedding   nn.Embedding(rows, cols)              weight [rows, cols]
    layers.i    nn.Linear(dim, dim), i < layers       weight [dim, dim], bias [dim]
    projection  nn.Linear(cols, rows, bias=False)     weight [rows, cols]
and torch.optim.Adam after one step holds exp_avg and exp_avg_sq shaped like every parameter,
so the checkpoint holds 3 x the parameters, as the C++ state does (model, Adam m and v).

A resume is what a program that starts up does: a new model and optimizer (Net() and
Adam(params), no step: the constructors' work, as the C++ side zero-fills its state), then
torch.load and both load_state_dicts, timed together.

Modes (all print JSON on stdout; times are seconds from time.perf_counter, faults are deltas of
resource.getrusage(RUSAGE_SELF).ru_minflt, the minor page faults of the process):
  default         --runs N timed rounds of save (with fsync), load (warm page cache) and
                  load_state_dict; prints one JSON object with every run and the file size.
  --serve         prints {"ready": ...} once the state is built, then answers one line of
                  JSON per command read from stdin:
                    "save"    {"save": s, "faults": n, "file_bytes": n}
                    "load"    {"load": s, "restore": s, "load_faults": n, "restore_faults": n}
                    "resume"  {"build": s, "load": s, "restore": s, "faults": n,
                               "build_faults": n}
                    "quit"
                  bench-suite uses this to interleave torch's runs with its own.
  --rss save|load one save, or one load and restore of the file a "save" run left, in this
                  fresh process; VmHWM is reset (/proc/self/clear_refs) just before it.
Without torch, every mode prints {"error": "..."} and exits with status 3.
"""

import argparse
import json
import os
import resource
import sys
import time


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def status_mib(field):
    """A field of /proc/self/status in MiB, or -1."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return -1.0


def reset_hwm():
    """Resets VmHWM to VmRSS (Linux >= 4.0); returns whether the kernel accepted it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def minor_faults():
    """The minor page faults of this process so far, every thread."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def new_model(torch, args):
    """A new Net, its parameters initialised by the modules' constructors."""
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(args.rows, args.cols)
            self.layers = nn.ModuleList(nn.Linear(args.dim, args.dim) for _ in range(args.layers))
            self.projection = nn.Linear(args.cols, args.rows, bias=False)

    return Net()


def build_state(torch, args):
    torch.manual_seed(20240601)
    model = new_model(torch, args)
    adam = torch.optim.Adam(model.parameters(), lr=3e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    adam.step()  # creates exp_avg and exp_avg_sq for every parameter
    for p in model.parameters():
        p.grad = None
    return model, adam


def checkpoint_of(model, adam):
    return {"model": model.state_dict(), "optimizer": adam.state_dict()}


def describe(torch, model, adam):
    params = sum(p.numel() for p in model.parameters())
    tensors = 0
    tensor_bytes = 0
    for t in model.state_dict().values():
        tensors += 1
        tensor_bytes += t.numel() * t.element_size()
    for s in adam.state.values():
        for key in ("exp_avg", "exp_avg_sq"):
            tensors += 1
            tensor_bytes += s[key].numel() * s[key].element_size()
    return {
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "threads": torch.get_num_threads(),
        "params": params,
        "tensors": tensors,  # model + exp_avg + exp_avg_sq (not Adam's one-element steps)
        "tensor_bytes": tensor_bytes,
    }


def fsync_path(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fresh_target(path):
    """Untimed: removes the file a save replaces and syncs, so the save starts on an idle disk
    (on a file system mounted with `discard`, freed blocks are discarded at the next commit)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
    os.sync()


def timed_save(torch, model, adam, path):
    """Seconds and minor faults of torch.save and the fsync, after an untimed fresh_target."""
    fresh_target(path)
    f0 = minor_faults()
    t0 = time.perf_counter()
    torch.save(checkpoint_of(model, adam), path)
    fsync_path(path)
    t = time.perf_counter() - t0
    return t, minor_faults() - f0


def timed_load(torch, model, adam, path):
    """torch.load alone ("load"), and load_state_dict into the live model and optimizer
    ("restore"): seconds and minor faults of each. The loaded dict is freed untimed."""
    f0 = minor_faults()
    t0 = time.perf_counter()
    ck = torch.load(path)
    t1 = time.perf_counter()
    f1 = minor_faults()
    model.load_state_dict(ck["model"])
    adam.load_state_dict(ck["optimizer"])
    t2 = time.perf_counter()
    f2 = minor_faults()
    return {"load": t1 - t0, "restore": t2 - t1, "load_faults": f1 - f0, "restore_faults": f2 - f1}


def timed_resume(torch, args, path):
    """A resume from nothing: a new model and Adam (no step), then torch.load and both
    load_state_dicts. Seconds and minor faults of the whole and of the build; the objects are
    freed untimed."""
    f0 = minor_faults()
    t0 = time.perf_counter()
    model = new_model(torch, args)
    adam = torch.optim.Adam(model.parameters(), lr=3e-4)
    t1 = time.perf_counter()
    f1 = minor_faults()
    loaded = timed_load(torch, model, adam, path)
    return {"build": t1 - t0, "load": loaded["load"], "restore": loaded["restore"],
            "faults": minor_faults() - f0, "build_faults": f1 - f0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, required=True, help="rows of embedding and projection")
    ap.add_argument("--cols", type=int, required=True, help="columns of embedding and projection")
    ap.add_argument("--layers", type=int, required=True, help="number of Linear(dim, dim) layers")
    ap.add_argument("--dim", type=int, required=True, help="size of each small layer")
    ap.add_argument("--file", required=True, help="the checkpoint file to write and read")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--serve", action="store_true")
    ap.add_argument("--rss", choices=("save", "load"))
    ap.add_argument("--keep", action="store_true", help="leave the file in place at the end")
    args = ap.parse_args()

    try:
        import torch
    except Exception as e:  # ImportError, or a broken install
        emit({"error": "torch is not importable by %s: %s" % (sys.executable, e)})
        return 3

    torch.set_grad_enabled(False)
    model, adam = build_state(torch, args)
    info = describe(torch, model, adam)
    path = args.file
    keep = args.keep or args.rss == "save"
    try:
        if args.rss:
            info["reset_works"] = reset_hwm()
            info["rss_before_mib"] = status_mib("VmRSS")
            if args.rss == "save":
                timed_save(torch, model, adam, path)
            else:
                timed_load(torch, model, adam, path)
            info["peak_mib"] = status_mib("VmHWM")
            emit(info)
            return 0

        if args.serve:
            emit(dict(info, ready=True))
            for line in sys.stdin:
                cmd = line.strip()
                if cmd == "save":
                    t, faults = timed_save(torch, model, adam, path)
                    emit({"save": t, "faults": faults, "file_bytes": os.path.getsize(path)})
                elif cmd == "load":
                    emit(timed_load(torch, model, adam, path))
                elif cmd == "resume":
                    emit(timed_resume(torch, args, path))
                elif cmd == "quit":
                    break
                else:
                    emit({"error": "unknown command %r" % cmd})
            return 0

        # Standalone: warm-up save and load (page cache, allocator), then the timed runs.
        timed_save(torch, model, adam, path)
        timed_load(torch, model, adam, path)
        runs = {"save": [], "load": [], "restore": []}
        for _ in range(args.runs):
            runs["save"].append(timed_save(torch, model, adam, path)[0])
            loaded = timed_load(torch, model, adam, path)
            runs["load"].append(loaded["load"])
            runs["restore"].append(loaded["restore"])
        info.update(runs)
        info["file_bytes"] = os.path.getsize(path)
        emit(info)
        return 0
    finally:
        if not keep:
            try:
                os.remove(path)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
