"""theris batch: discovery, resumability, failure isolation, locks, shards and path safety.

Most tests use `fake_upscale`, a stand-in for pipeline.upscale_video with the same signature and the
same atomic_output, so that they test the batch logic in milliseconds; the end-to-end tests run the
real pipeline on tiny clips with an identity-like model.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import pytest

from theris_cli.batch import PathFilter, check_roots, discover, run_batch
from theris_cli.batch.claims import Claim, LockInfo, lock_path, try_claim
from theris_cli.batch.paths import safe_output_path
from theris_cli.outputs import remove_dead_partials
from theris_cli.batch.shard import Shard, parse_shard, resolve_shard, shard_from_env
from theris_cli.errors import DeviceError, InputError, OutputError, UsageError
from theris_cli.outputs import atomic_output
from workers import WORKER_STARTUP_CAP, eventually, start_worker, wait_until_written

SEQ = ("0001.png", "0002.png", "0003.png")


def fake_upscale(src, dst, *, model=None, overwrite=False, on_progress=None, calls=None, delay=0.0, **_):
    """Writes b'x4:' + the input bytes, through atomic_output; CORRUPT -> InputError, BUG -> RuntimeError."""
    src = Path(src)
    folder = src if src.is_dir() else src.parent if "%" in src.name else None
    data = b"".join(p.read_bytes() for p in sorted(folder.iterdir())) if folder else src.read_bytes()
    if calls is not None:
        calls.append(str(src))
    if b"CORRUPT" in data:
        raise InputError(f"{src.name}: corrupt data at frame 3; re-export or remove the file")
    if b"BUG" in data:
        raise RuntimeError("boom")
    with atomic_output(dst, overwrite=overwrite, src=src) as tmp:
        tmp.write_bytes(b"x4:" + data)
        time.sleep(delay)
        if on_progress:
            on_progress(2, 2)
    return SimpleNamespace(frames_in=1, frames_out=2)


def upscaler(**kw):
    return lambda *a, **k: fake_upscale(*a, **{**k, **kw})


def meeting_upscaler(workers: int, **kw):
    """`upscaler(**kw)` whose first call in each worker thread waits until every worker has made its
    first call: each worker has started its run and holds a file before any file is finished, however
    the threads are scheduled."""
    barrier = threading.Barrier(workers, timeout=WORKER_STARTUP_CAP)
    met: set[int] = set()
    lock = threading.Lock()

    def upscale(*a, **k):
        with lock:
            first = threading.get_ident() not in met
            met.add(threading.get_ident())
        if first:
            barrier.wait()
        return fake_upscale(*a, **{**k, **kw})

    return upscale


def age_records(out_dir: Path, seconds: float = 3600.0) -> None:
    """Date the completion records under ``out_dir`` ``seconds`` back: older than any later run's
    start, whatever the clock's resolution."""
    for path in (out_dir / ".theris" / "done").rglob("*.json"):
        record = json.loads(path.read_text())
        record["finished"] -= seconds
        path.write_text(json.dumps(record))


def make_tree(root: Path) -> Path:
    """IN_DIR with two good videos (one nested), a corrupt one, a sequence folder and non-videos."""
    files = {
        "a.mp4": b"good a",
        "sub/deeper/b.MKV": b"good b",
        "sub/bad.avi": b"CORRUPT",
        "notes.txt": b"not a video",
        ".hidden.mp4": b"hidden",
        "sub/._b.mkv": b"macOS resource fork",
        "one_image/0001.png": b"a single picture",
    }
    files.update({f"seq/{n}": f"frame {n}".encode() for n in SEQ})
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def run(in_dir, out_dir, **kw):
    kw.setdefault("upscale", upscaler())
    kw.setdefault("model", object())
    kw.setdefault("weights", "stand-in")
    return run_batch(in_dir, out_dir, **kw)


def by_input(result):
    return {f.input: f for f in result.files}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and ".theris" not in p.parts}


# --- discovery ---------------------------------------------------------------------------------


def test_discover_videos_sequences_and_mirrored_names(tmp_path):
    in_dir = make_tree(tmp_path / "in")
    jobs = discover(*check_roots(in_dir, tmp_path / "out"))
    assert [(j.name, j.dst_rel.as_posix(), j.kind) for j in jobs] == [
        ("a.mp4", "a.mkv", "video"),
        ("seq/", "seq.mkv", "images"),
        ("sub/bad.avi", "sub/bad.mkv", "video"),
        ("sub/deeper/b.MKV", "sub/deeper/b.mkv", "video"),
    ]
    seq = jobs[1]
    assert seq.src == in_dir.resolve() / "seq" / "%04d.png" and seq.start_number == 1 and len(seq.frames) == 3


def test_sequences_sharing_a_folder_become_patterns(tmp_path):
    in_dir = tmp_path / "in"
    in_dir.mkdir()
    for name in ("ir_007.png", "ir_008.png", "vis_0.tif", "vis_1.tif", "vis_3.tif", "cover.png"):
        (in_dir / "shoot" / name).parent.mkdir(exist_ok=True)
        (in_dir / "shoot" / name).write_bytes(b"img")
    jobs = discover(*check_roots(in_dir, tmp_path / "out"))
    assert [(j.name, j.dst_rel.as_posix(), j.src.name) for j in jobs] == [
        ("shoot/ir/", "shoot/ir.mkv", "ir_%03d.png"),
        ("shoot/vis/", "shoot/vis.mkv", "vis_%d.tif"),
    ]
    assert "start above 4" in jobs[0].problem and "gaps" in jobs[1].problem

    for name in ("0010.png", "0011.png", "0013.png"):  # the same, alone in a folder: read as the folder
        (in_dir / "gappy" / name).parent.mkdir(exist_ok=True)
        (in_dir / "gappy" / name).write_bytes(b"img")
    gappy = discover(*check_roots(in_dir, tmp_path / "out"), path_filter=PathFilter(["gappy"]))
    assert [(j.src, j.problem) for j in gappy] == [(in_dir.resolve() / "gappy", "")]


def test_discover_names_do_not_collide_and_do_not_depend_on_filters(tmp_path):
    in_dir = tmp_path / "in"
    for rel in ("clip.mp4", "clip.avi", "x/clip.mov", "x/CLIP/0998.png", "x/CLIP/0999.png", "x/CLIP/1000.png"):
        (in_dir / rel).parent.mkdir(parents=True, exist_ok=True)
        (in_dir / rel).write_bytes(b"v")
    roots = check_roots(in_dir, tmp_path / "out")
    names = {j.name: j.dst_rel.as_posix() for j in discover(*roots)}
    assert names == {
        "clip.avi": "clip.avi.mkv", "clip.mp4": "clip.mp4.mkv", "x/clip.mov": "x/clip.mov.mkv", "x/CLIP/": "x/CLIP.png.mkv"
    }
    for include, exclude in ([["clip.mp4"], []], [[], ["CLIP"]]):
        filtered = {j.name: j.dst_rel.as_posix() for j in discover(*roots, path_filter=PathFilter(include, exclude))}
        assert filtered.items() <= names.items()
    same = {j.name: j.dst_rel.as_posix() for j in discover(*roots, ext="same")}
    assert same == {"clip.avi": "clip.avi", "clip.mp4": "clip.mp4", "x/clip.mov": "x/clip.mov", "x/CLIP/": "x/CLIP.mkv"}
    seq = next(j for j in discover(*roots) if j.kind == "images")
    assert seq.src.name == "CLIP" and seq.start_number == 998  # numbers above 0..4: read as the folder


def test_same_stem_added_later_never_redoes_or_renames_a_done_output(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "clip.mkv").write_bytes(b"first")
    assert run(in_dir, out_dir).count("done") == 1
    assert files_under(out_dir) == {"clip.mkv"}

    (in_dir / "clip.mp4").write_bytes(b"second")  # same stem, added after clip.mkv was done
    calls = []
    result = run(in_dir, out_dir, upscale=upscaler(calls=calls))
    assert [Path(c).name for c in calls] == ["clip.mp4"]
    assert {f.input: (f.status, f.output) for f in result.files} == {
        "clip.mkv": ("skipped", "clip.mkv"), "clip.mp4": ("done", "clip.mp4.mkv")
    }
    assert files_under(out_dir) == {"clip.mkv", "clip.mp4.mkv"}
    assert (out_dir / "clip.mkv").read_bytes() == b"x4:first"

    (in_dir / "clip.avi").write_bytes(b"third")  # and another: the two done names hold
    result = run(in_dir, out_dir)
    assert {f.input: (f.status, f.output) for f in result.files} == {
        "clip.avi": ("done", "clip.avi.mkv"), "clip.mkv": ("skipped", "clip.mkv"), "clip.mp4": ("skipped", "clip.mp4.mkv")
    }
    (in_dir / "clip.mkv").unlink()  # removing one renames nothing else
    assert run(in_dir, out_dir).count("skipped") == 2


@pytest.mark.parametrize(
    "include, exclude, expected",
    [
        ([], ["sub"], ["a.mp4", "seq/"]),
        (["*.mp4"], [], ["a.mp4"]),
        (["sub/**"], ["bad.*"], ["sub/deeper/b.MKV"]),
        (["sub"], [], ["sub/bad.avi", "sub/deeper/b.MKV"]),
        (["seq"], [], ["seq/"]),
        (["**/b.MKV"], [], ["sub/deeper/b.MKV"]),
        (["s?b/*/*"], [], ["sub/deeper/b.MKV"]),
    ],
)
def test_include_exclude_globs(tmp_path, include, exclude, expected):
    in_dir = make_tree(tmp_path / "in")
    jobs = discover(*check_roots(in_dir, tmp_path / "out"), path_filter=PathFilter(include, exclude))
    assert [j.name for j in jobs] == expected


@pytest.mark.parametrize("bad", ["../x", "/abs/*.mp4", ""])
def test_globs_must_stay_relative(bad):
    with pytest.raises(UsageError, match="relative to IN_DIR"):
        PathFilter(include=[bad])


def test_roots_refused_when_same_or_nested_the_wrong_way(tmp_path):
    in_dir = make_tree(tmp_path / "in")
    with pytest.raises(UsageError, match="same folder"):
        check_roots(in_dir, in_dir / "." / "sub" / "..")
    with pytest.raises(UsageError, match="inside OUT_DIR"):
        check_roots(in_dir, tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        check_roots(tmp_path / "missing", tmp_path / "out")


def test_out_dir_inside_in_dir_is_not_processed(tmp_path):
    in_dir = make_tree(tmp_path / "in")
    out_dir = in_dir / "upscaled"
    first = run(in_dir, out_dir)
    assert first.count("done") == 3
    again = run(in_dir, out_dir)  # outputs (a.mkv, ...) inside IN_DIR are not new inputs
    assert {f.input for f in again.files} == {f.input for f in first.files}
    assert again.count("done") == 0 and again.count("failed") == 1


# --- a batch: results, report, resume ----------------------------------------------------------


def test_batch_results_report_and_failure_isolation(tmp_path):
    in_dir, out_dir = make_tree(tmp_path / "in"), tmp_path / "out"
    before = {p: p.read_bytes() for p in in_dir.rglob("*") if p.is_file()}
    result = run(in_dir, out_dir, report=tmp_path / "report.json")
    files = by_input(result)
    assert {k: v.status for k, v in files.items()} == {
        "a.mp4": "done", "seq/": "done", "sub/bad.avi": "failed", "sub/deeper/b.MKV": "done"
    }
    assert files["sub/bad.avi"].reason.startswith("bad.avi: corrupt data at frame 3")
    assert files["sub/bad.avi"].error_type == "InputError"
    assert not result.ok
    assert files_under(out_dir) == {"a.mkv", "seq.mkv", "sub/deeper/b.mkv"}
    assert (out_dir / "a.mkv").read_bytes() == b"x4:good a"
    assert before == {p: p.read_bytes() for p in in_dir.rglob("*") if p.is_file()}  # inputs untouched

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["counts"] == {"done": 3, "skipped": 0, "busy": 0, "failed": 1}
    assert [f["status"] for f in report["files"]] == ["done", "done", "failed", "done"]
    assert report["files"][0]["output_bytes"] == len(b"x4:good a")
    kept = list((out_dir / ".theris" / "reports").glob("*.json"))
    assert len(kept) == 1 and json.loads(kept[0].read_text())["counts"] == report["counts"]
    assert not list((out_dir / ".theris" / "locks").iterdir())  # every lock released


def test_internal_error_is_isolated_with_traceback(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "a.mp4").write_bytes(b"BUG")
    (in_dir / "b.mp4").write_bytes(b"fine")
    result = run(in_dir, out_dir)
    a, b = result.files
    assert (a.status, a.error_type, b.status) == ("failed", "internal", "done")
    assert a.reason == "internal error: RuntimeError: boom" and "Traceback" in a.traceback


@pytest.mark.parametrize("error", [KeyboardInterrupt(), DeviceError("CUDA is not available; use --device cpu")])
def test_interrupt_or_fatal_error_stops_the_batch_cleanly(tmp_path, error):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for n in "abc":
        (in_dir / f"{n}.mp4").write_bytes(n.encode())

    def stop_on_b(src, dst, **kw):
        if Path(src).name == "b.mp4":
            with atomic_output(dst, overwrite=kw["overwrite"]):
                raise error
        return fake_upscale(src, dst, **kw)

    with pytest.raises(type(error)):
        run(in_dir, out_dir, upscale=stop_on_b, report=tmp_path / "r.json")
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["stopped"].endswith("(during b.mp4, which is left unfinished)")
    assert [f["status"] for f in report["files"]] == ["done"]
    assert files_under(out_dir) == {"a.mkv"} and not list((out_dir / ".theris" / "locks").iterdir())


def test_rerun_skips_done_and_redoes_changed_or_overwritten(tmp_path):
    in_dir, out_dir = make_tree(tmp_path / "in"), tmp_path / "out"
    (in_dir / "sub" / "bad.avi").unlink()
    run(in_dir, out_dir)
    calls = []
    again = run(in_dir, out_dir, upscale=upscaler(calls=calls))
    assert calls == [] and again.count("skipped") == 3 and again.ok

    (in_dir / "a.mp4").write_bytes(b"good a, edited")  # input changed
    (out_dir / "sub" / "deeper" / "b.mkv").write_bytes(b"truncat")  # output damaged
    again = run(in_dir, out_dir, upscale=upscaler(calls=calls))
    assert {f.input for f in again.files if f.status == "done"} == {"a.mp4", "sub/deeper/b.MKV"}
    assert (out_dir / "a.mkv").read_bytes() == b"x4:good a, edited"

    assert run(in_dir, out_dir, window=6).count("done") == 3  # settings changed
    assert run(in_dir, out_dir, overwrite=True).count("done") == 3
    assert run(in_dir, out_dir).count("skipped") == 3


def test_verify_catches_same_size_corruption(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    (in_dir / "a.mp4").write_bytes(b"good")
    run(in_dir, out_dir)
    (out_dir / "a.mkv").write_bytes(b"x4:bad!")  # same size
    assert run(in_dir, out_dir).files[0].status == "skipped"
    assert run(in_dir, out_dir, verify=True).files[0].status == "done"


def test_rerun_after_crash_redoes_only_the_unfinished_file(tmp_path):
    """A dead worker left a lock (dead pid on this host) and a partial output for b.mp4."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for n in "abc":
        (in_dir / f"{n}.mp4").write_bytes(n.encode())
    run(in_dir, out_dir, include=["a.mp4", "c.mp4"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = lock_path(out_dir / ".theris" / "locks", "b.mkv")
    lock.write_bytes(LockInfo(socket.gethostname(), dead.pid, None, time.time(), "dead", "b.mp4").to_json())
    partial = out_dir / "b.theris-partial-1a2b3c.mkv"
    partial.write_bytes(b"half")

    calls = []
    result = run(in_dir, out_dir, upscale=upscaler(calls=calls))
    assert [Path(c).name for c in calls] == ["b.mp4"]
    assert [f.status for f in result.files] == ["skipped", "done", "skipped"]
    assert not partial.exists() and not lock.exists()
    assert files_under(out_dir) == {"a.mkv", "b.mkv", "c.mkv"}


def test_kill_9_mid_file_then_rerun(tmp_path):
    """A real worker process killed with SIGKILL while writing c.mp4's output, after a and b."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for n in "abc":
        (in_dir / f"{n}.mp4").write_bytes(n.encode())
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_batch import fake_upscale
        from theris_cli.batch import run_batch
        def slow_on_b(src, dst, **kw):
            return fake_upscale(src, dst, **kw, delay=60 if src.name == "c.mp4" else 0)
        run_batch({str(in_dir)!r}, {str(out_dir)!r}, upscale=slow_on_b, model=object(), weights="stand-in")
        """
    )
    log = tmp_path / "worker.log"
    worker = start_worker(script, log)
    wait_until_written(worker, out_dir, "c.theris-partial-*.mkv", log)
    worker.kill()
    worker.wait()
    assert not (out_dir / "c.mkv").exists()  # a partial output never has the final name

    calls = []
    result = run(in_dir, out_dir, upscale=upscaler(calls=calls))
    assert [Path(c).name for c in calls] == ["c.mp4"]
    assert [f.status for f in result.files] == ["skipped", "skipped", "done"]
    assert not list(out_dir.glob("*.theris-partial-*")) and not list((out_dir / ".theris" / "locks").iterdir())
    assert files_under(out_dir) == {"a.mkv", "b.mkv", "c.mkv"}


# --- many workers ------------------------------------------------------------------------------


def test_two_concurrent_workers_process_each_file_once(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    names = [f"{i:02d}.mp4" for i in range(8)]
    for n in names:
        (in_dir / n).write_bytes(n.encode())
    calls: list[str] = []
    results = []
    upscale = meeting_upscaler(2, calls=calls, delay=0.03)  # both work at once: neither can do all

    def worker():
        results.append(run(in_dir, out_dir, upscale=upscale))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(Path(c).name for c in calls) == names  # each exactly once
    assert all(r.ok for r in results)
    assert sum(r.count("done") for r in results) == 8
    assert all(r.count("done") > 0 for r in results)  # both did work
    assert files_under(out_dir) == {n.replace(".mp4", ".mkv") for n in names}


def test_two_worker_processes_process_each_file_once(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    names = [f"{i:02d}.mp4" for i in range(6)]
    for n in names:
        (in_dir / n).write_bytes(n.encode())
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_batch import fake_upscale
        from theris_cli.batch import run_batch
        slow = lambda src, dst, **kw: fake_upscale(src, dst, **kw, delay=0.15)
        r = run_batch({str(in_dir)!r}, {str(out_dir)!r}, upscale=slow, model=object(), weights="stand-in")
        print(json.dumps([f.input for f in r.files if f.status == "done"]))
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    done = [json.loads(w.communicate(timeout=WORKER_STARTUP_CAP)[0]) for w in workers]
    assert sorted(done[0] + done[1]) == names  # every file once, by one worker or the other
    assert files_under(out_dir) == {n.replace(".mp4", ".mkv") for n in names}


def test_concurrent_overwrite_redoes_each_file_once(tmp_path):
    """--overwrite redoes files finished before this run, not those another worker just redid."""
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    names = [f"{i:02d}.mp4" for i in range(6)]
    for n in names:
        (in_dir / n).write_bytes(n.encode())
    run(in_dir, out_dir)
    age_records(out_dir)  # records of the first run are older than the next runs' start
    calls: list[str] = []
    # both runs have started before either finishes a file, so neither takes the other's for old
    upscale = meeting_upscaler(2, calls=calls, delay=0.1)
    threads = [
        threading.Thread(target=run, args=(in_dir, out_dir), kwargs=dict(overwrite=True, upscale=upscale))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(Path(c).name for c in calls) == names


def test_two_shards_cover_every_file_exactly_once(tmp_path):
    in_dir = make_tree(tmp_path / "in")
    out_dir = tmp_path / "out"
    s0 = run(in_dir, out_dir, shard="0/2")
    s1 = run(in_dir, out_dir, shard="1/2")
    names0, names1 = {f.input for f in s0.files}, {f.input for f in s1.files}
    assert not names0 & names1
    assert names0 | names1 == {"a.mp4", "seq/", "sub/bad.avi", "sub/deeper/b.MKV"}
    assert s0.shard == "0/2" and s1.shard == "1/2" and s0.shard_source == "--shard"


def test_shard_rule_and_slurm_environment():
    rels = [f"d{i}/clip{i}.mp4" for i in range(50)]
    shards = [Shard(i, 3) for i in range(3)]
    assert sorted(r for s in shards for r in rels if s.owns(r)) == sorted(rels)
    assert all(any(s.owns(r) for r in rels) for s in shards)
    assert parse_shard("2/4") == Shard(2, 4)
    for bad in ("4/4", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(UsageError, match="INDEX/COUNT"):
            parse_shard(bad)
    env = {"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_MAX": "8", "SLURM_ARRAY_TASK_COUNT": "8"}
    assert shard_from_env(env) == Shard(4, 8, "slurm")
    assert shard_from_env({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "3"}) == Shard(3, 4, "slurm")
    stepped = {"SLURM_ARRAY_TASK_ID": "6", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "6", "SLURM_ARRAY_TASK_STEP": "2"}
    assert shard_from_env(stepped) == Shard(3, 4, "slurm")
    assert shard_from_env({}) is None
    with pytest.raises(UsageError, match="--shard"):
        shard_from_env({"SLURM_ARRAY_TASK_ID": "9", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"})
    assert resolve_shard("1/2", env) == Shard(1, 2)  # explicit wins
    assert resolve_shard(None, env) == Shard(4, 8, "slurm")
    assert resolve_shard(None, {}).count == 1


def test_lock_claim_busy_and_stale_recovery(tmp_path):
    path = tmp_path / "locks" / "x.lock"
    mine = try_claim(path, input_name="x.mp4")
    assert isinstance(mine, Claim)
    holder = try_claim(path)  # same host, live pid: busy
    assert isinstance(holder, LockInfo) and holder.pid == os.getpid() and holder.input == "x.mp4"
    mine.release()
    assert not path.exists()

    # another host: busy while it refreshes the lock, stale once it has not for stale_after
    path.write_bytes(LockInfo("elsewhere", 1, None, time.time(), "t1").to_json())
    assert isinstance(try_claim(path, stale_after=60), LockInfo)
    old = time.time() - 120
    os.utime(path, (old, old))
    took = try_claim(path, stale_after=60)
    assert isinstance(took, Claim) and took.recovered.host == "elsewhere"
    took.release()

    # a lock without content (writer died between create and write): busy at first, stale later
    path.write_bytes(b"")
    assert try_claim(path) is None
    os.utime(path, (old, old))
    took = try_claim(path)
    assert isinstance(took, Claim)
    took.release()
    assert sorted(p.name for p in path.parent.iterdir()) == []  # no leftovers of the takeover


def test_heartbeat_keeps_lock_fresh_and_notices_a_takeover(tmp_path):
    path = tmp_path / "x.lock"
    claim = try_claim(path, heartbeat=0.05)
    old = time.time() - 1000
    os.utime(path, (old, old))
    assert eventually(lambda: time.time() - path.stat().st_mtime < 5)  # refreshed by the heartbeat
    path.write_bytes(LockInfo("elsewhere", 1, None, time.time(), "thief").to_json())
    assert eventually(lambda: claim.lost)
    claim.release()
    assert path.exists()  # not ours any more: left alone


def test_remove_partials_only_touches_its_own_leftovers(tmp_path):
    for name in ("b.theris-partial-1a2b3c.mkv", "b.theris-partial-ffffff.mkv", "bb.theris-partial-1a2b3c.mkv", "b.mkv"):
        (tmp_path / name).write_bytes(b"")
    gone = remove_dead_partials(tmp_path / "b.mkv")
    assert len(gone) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.mkv", "bb.theris-partial-1a2b3c.mkv"]


# --- end to end: the real pipeline and the CLI --------------------------------------------------


@pytest.fixture
def clip_tree(tmp_path):
    """Tiny real clips: 8-bit mkv, nested 16-bit mkv and H.264 mp4, a PNG sequence, a truncated
    mkv, a non-video with a video extension and a text file."""
    from clips import ramp_frames, write_clip

    in_dir = tmp_path / "in"
    write_clip(in_dir / "a.mkv", ramp_frames(5, 16, 24))
    write_clip(in_dir / "sub" / "b16.mkv", ramp_frames(4, 16, 24, bits=16))
    write_clip(in_dir / "sub" / "c.mp4", ramp_frames(3, 16, 24))
    write_clip(in_dir / "seq" / "%04d.png", ramp_frames(3, 16, 24, bits=16))
    good = (in_dir / "a.mkv").read_bytes()
    (in_dir / "sub" / "truncated.mkv").write_bytes(good[: len(good) // 2])
    (in_dir / "garbage.mp4").write_bytes(b"not a video" * 100)
    (in_dir / "notes.txt").write_text("field notes")
    return in_dir


def test_cli_batch_end_to_end(clip_tree, tmp_path):
    from typer.testing import CliRunner

    from theris_cli.cli import app
    from theris_cli.video import probe

    out_dir, report = tmp_path / "out", tmp_path / "report.json"
    args = ["batch", str(clip_tree), str(out_dir), "--weights", "tiny-random", "--device", "cpu", "--report", str(report)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "2 failed" in result.output and "sub/truncated.mkv" in result.output
    files = {f["input"]: f for f in json.loads(report.read_text())["files"]}
    assert {k: v["status"] for k, v in files.items()} == {
        "a.mkv": "done", "garbage.mp4": "failed", "seq/": "done", "sub/b16.mkv": "done",
        "sub/c.mp4": "done", "sub/truncated.mkv": "failed",
    }
    assert "truncated or damaged" in files["sub/truncated.mkv"]["reason"]
    assert files["garbage.mp4"]["error_type"] == "InputError"
    assert files_under(out_dir) == {"a.mkv", "seq.mkv", "sub/b16.mkv", "sub/c.mkv"}
    b16 = probe(out_dir / "sub" / "b16.mkv")
    assert (b16.width, b16.height, b16.bit_depth, b16.frame_count) == (96, 64, 16, 8)
    assert files["a.mkv"]["frames_out"] == 10 and files["seq/"]["frames_in"] == 3

    again = CliRunner().invoke(app, args + ["--exclude", "garbage.mp4", "--exclude", "truncated.mkv"])
    assert again.exit_code == 0, again.output
    assert json.loads(report.read_text())["counts"] == {"done": 0, "skipped": 4, "busy": 0, "failed": 0}


def test_batch_reports_each_files_events(tmp_path):
    """A recording with a flat-field correction: the report, the per-file line and the summary say
    what event detection found; a plain recording has none."""
    from typer.testing import CliRunner

    from clips import ramp_frames, scene_frames, shutter_event, write_clip
    from theris_cli.cli import app

    in_dir, out_dir, report = tmp_path / "in", tmp_path / "out", tmp_path / "report.json"
    write_clip(in_dir / "ffc.mkv", shutter_event(scene_frames(16, 24, 32, seed=1), at=10, frozen=2))
    write_clip(in_dir / "plain.mkv", ramp_frames(4, 16, 24))
    result = CliRunner().invoke(app, ["batch", str(in_dir), str(out_dir), "--weights", "tiny-random", "--device",
                                      "cpu", "--report", str(report)])
    assert result.exit_code == 0, result.output
    files = {f["input"]: f for f in json.loads(report.read_text())["files"]}
    assert files["ffc.mkv"]["events"] == {"repeated": 2, "splices": [], "shutters": [10]}
    assert files["plain.mkv"]["events"] == {"repeated": 0, "splices": [], "shutters": []}
    assert "ffc.mkv -> ffc.mkv: done" in result.output and "events: 1 shutter event, 2 repeated frames" in result.output
    assert "events in 1 file" in result.output


def test_cli_batch_usage_errors(tmp_path):
    from typer.testing import CliRunner

    from theris_cli.cli import app

    (tmp_path / "in").mkdir()
    for args, message in [(["--shard", "2/2"], "INDEX/COUNT"), (["--ext", "gif"], "--ext")]:
        result = CliRunner().invoke(app, ["batch", str(tmp_path / "in"), str(tmp_path / "out"), *args])
        assert isinstance(result.exception, UsageError) and message in str(result.exception), args
    result = CliRunner().invoke(app, ["batch", str(tmp_path / "in"), str(tmp_path / "out"), "--window", "1"])
    assert result.exit_code == 2 and "--window" in result.output
    result = CliRunner().invoke(app, ["batch", str(tmp_path / "in"), str(tmp_path / "in")])
    assert isinstance(result.exception, UsageError) and "same folder" in str(result.exception)


# --- nothing escapes OUT_DIR -------------------------------------------------------------------


def test_output_symlink_escaping_out_dir_is_refused(tmp_path):
    in_dir, out_dir, outside = make_tree(tmp_path / "in"), tmp_path / "out", tmp_path / "outside"
    outside.mkdir()
    (out_dir).mkdir()
    (out_dir / "sub").symlink_to(outside, target_is_directory=True)
    result = run(in_dir, out_dir)
    files = by_input(result)
    assert files["sub/deeper/b.MKV"].status == "failed" and "outside OUT_DIR" in files["sub/deeper/b.MKV"].reason
    assert files["a.mp4"].status == "done"
    assert list(outside.rglob("*")) == []


def test_output_paths_never_leave_out_dir(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for bad in ("../x.mkv", "a/../../x.mkv", "/etc/x.mkv", ""):
        with pytest.raises(OutputError):
            safe_output_path(out, PurePosixPath(bad))
    (out / "link.mkv").symlink_to(tmp_path / "target.mkv")
    with pytest.raises(OutputError, match="symlink"):
        safe_output_path(out, "link.mkv")
    (out / "inner").symlink_to(out / "real", target_is_directory=True)
    (out / "real").mkdir()
    assert safe_output_path(out, "inner/x.mkv", create_parents=True) == out / "inner" / "x.mkv"


def test_symlinked_inputs_are_read_but_outputs_stay_in_the_mirror(tmp_path):
    in_dir, out_dir, elsewhere = tmp_path / "in", tmp_path / "out", tmp_path / "elsewhere"
    in_dir.mkdir()
    elsewhere.mkdir()
    (elsewhere / "far.mp4").write_bytes(b"far away")
    (in_dir / "near.mp4").symlink_to(elsewhere / "far.mp4")
    (in_dir / "loop").symlink_to(in_dir, target_is_directory=True)  # folder links are not followed
    result = run(in_dir, out_dir)
    assert [(f.input, f.output, f.status) for f in result.files] == [("near.mp4", "near.mkv", "done")]
    assert (out_dir / "near.mkv").read_bytes() == b"x4:far away"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["far.mp4"]


def test_an_empty_in_dir_is_an_error_and_makes_no_out_dir(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "notes.txt").write_text("no videos here")
    with pytest.raises(InputError, match="holds no videos or image sequences; check"):
        run(tmp_path / "in", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError, match="that --include/--exclude select"):
        run(make_tree(tmp_path / "in2"), tmp_path / "out", include=["*.webm"])
    assert not (tmp_path / "out").exists()


def test_ctrl_c_counts_the_inputs_never_started(tmp_path):
    in_dir, out_dir = tmp_path / "in", tmp_path / "out"
    in_dir.mkdir()
    for n in "abcdef":
        (in_dir / f"{n}.mp4").write_bytes(n.encode())
    calls = []

    def interrupt_on_b(src, dst, **kw):
        if Path(src).name == "b.mp4":
            raise KeyboardInterrupt
        return fake_upscale(src, dst, calls=calls, **kw)

    with pytest.raises(KeyboardInterrupt):
        run(in_dir, out_dir, upscale=interrupt_on_b)
    [report] = (out_dir / ".theris" / "reports").iterdir()
    rep = json.loads(report.read_text())
    assert rep["not_started"] == 4  # c..f; a done, b unfinished
    assert "during b.mp4" in rep["stopped"]
