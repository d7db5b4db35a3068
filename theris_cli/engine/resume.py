"""Resume inside one file: the output is written in segments beside the destination.

    out.mkv.theris-unfinished/
        manifest.json    what the segments belong to (input, weights, options) and which are complete
        00000.mkv ...    complete segments, in order: lossless FFV1 of the output frames

Rerunning the same command continues after the last complete segment: the input is decoded again
from its start (cheap beside the model), the model runs only for the windows that feed frames not
yet written (theris_cli.engine.samples, ``skip``). The destination itself is written as before, frame
by frame, by its own writer (codec, audio, tags) under a temporary name renamed into place at the
end; a resumed run first feeds it the frames of the complete segments, read back. So the
destination is encoded once, in one pass, whatever its codec: a resumed output is given the same
frames as an uninterrupted one (lossless output: the same file content frame for frame; a lossy
encoder may differ slightly from run to run anyway). The price is disk space for the lossless segments until
the end (an upscaled frame is 16x the input's pixels), and the time to write them, in the encode
thread beside the model.

A different input (size, modification time, or the SHA-256 of its first MiB), weights (SHA-256) or
option that changes the output starts over, with one line saying which; ``resume=False`` deletes
the unfinished work and keeps no segments (no disk space, nothing to continue from). The work folder
is removed when the destination is complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch

from theris_cli.errors import OutputError
from theris_cli.outputs import output_error

log = logging.getLogger("theris")

WORK_SUFFIX = ".theris-unfinished"  # out.mkv -> out.mkv.theris-unfinished/
MANIFEST = "manifest.json"
FORMAT = "theris-unfinished/1"
SEGMENT_SECONDS = 2.0  # seconds of output per segment: what a crash can lose
HEAD_BYTES = 1 << 20  # bytes of the input hashed into its identity


def work_dir(dst: str | Path) -> Path:
    dst = Path(dst)
    return dst.with_name(dst.name + WORK_SUFFIX)


def input_identity(src: str | Path) -> dict[str, Any]:
    """Size, modification time and the SHA-256 of the first MiB of a file; for an image sequence
    (a folder or a pattern) the names, sizes and times of its folder's files."""
    src = Path(src)
    if src.is_file():
        st = src.stat()
        h = hashlib.sha256()
        with open(src, "rb") as f:
            h.update(f.read(HEAD_BYTES))
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "head_sha256": h.hexdigest()}
    folder = src if src.is_dir() else src.parent
    h = hashlib.sha256()
    for e in sorted(os.scandir(folder), key=lambda e: e.name):
        if e.is_file():
            st = e.stat()
            h.update(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return {"files_sha256": h.hexdigest()}


def weights_identity(model: torch.nn.Module) -> str:
    """The weights file's SHA-256 where it is known, else one of the parameters' bytes."""
    winfo = getattr(model, "weights_info", None)
    if winfo is not None and getattr(winfo, "sha256", None):
        return str(winfo.sha256)
    h = hashlib.sha256(type(model).__qualname__.encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


class Work:
    """The work folder of one destination: its manifest and its complete segments."""

    def __init__(self, dst: Path, key: dict[str, Any], manifest: Optional[dict] = None):
        self.dst, self.dir, self.key = dst, work_dir(dst), key
        self.segments: list[dict[str, Any]] = list(manifest["segments"]) if manifest else []
        self.tile: Any = manifest.get("tile", "unset") if manifest else "unset"  # the tile the run used

    @classmethod
    def open(cls, dst: str | Path, key: dict[str, Any], resume: bool = True) -> tuple["Work", Optional[str]]:
        """The work for ``dst`` and a one-line note (resumed, or started over and why; None: new)."""
        dst = Path(dst)
        folder = work_dir(dst)
        if not folder.exists():
            return cls(dst, key), None
        manifest = _read_manifest(folder)
        if not resume:
            note = f"{dst}: starting over (--no-resume): removed the unfinished work in {folder}"
        elif manifest is None:
            note = f"{dst}: the unfinished work in {folder} is unreadable; starting over"
        else:
            changed = [what for what in ("input", "weights", "options") if manifest.get(what) != key.get(what)]
            if not changed:
                work = cls(dst, key, manifest)
                work._drop_strays()
                if not work.segments:
                    return work, None
                return work, f"{dst}: resuming after {work.done} output frames already written in {folder}"
            note = f"{dst}: the {' and '.join(changed)} changed since the unfinished run; starting over"
        _remove_tree(folder)
        return cls(dst, key), note

    @property
    def done(self) -> int:
        """Output frames in complete segments."""
        return sum(int(s["frames"]) for s in self.segments)

    def _drop_strays(self) -> None:
        """Keep the complete segments that are there, in order; delete anything else (a killed
        segment's partial file)."""
        kept = []
        for s in self.segments:
            p = self.dir / s["file"]
            if not p.is_file() or p.stat().st_size != s["bytes"]:
                break
            kept.append(s)
        self.segments = kept
        names = {s["file"] for s in kept} | {MANIFEST}
        for p in self.dir.iterdir():
            if p.name not in names:
                _remove_tree(p) if p.is_dir() else p.unlink(missing_ok=True)

    def sink(self, writer, width: int, height: int, fps, bit_depth: int, segment_frames: int, up=None) -> "SegmentSink":
        """``writer`` (the destination's) wrapped to keep every frame in segments here too."""
        try:
            self.dir.mkdir(exist_ok=True)
        except OSError as e:
            raise output_error(e, self.dir) from e
        self._save()
        return SegmentSink(self, writer, width, height, fps, bit_depth, segment_frames, up)

    def add(self, tmp: Path, frames: int, tile: Any) -> None:
        """Make the segment written to ``tmp`` complete: durable, renamed, listed."""
        name = f"{len(self.segments):05d}.mkv"
        _fsync(tmp)
        os.replace(tmp, self.dir / name)
        self.segments.append({"file": name, "frames": frames, "bytes": (self.dir / name).stat().st_size})
        self.tile = tile
        self._save()

    def frames(self, segments: list[dict[str, Any]]) -> Iterator[np.ndarray]:
        """The output frames of ``segments`` (complete ones), in order."""
        from theris_cli.video import read_frames

        for s in segments:
            yield from read_frames(self.dir / s["file"])

    def remove(self) -> None:
        _remove_tree(self.dir)

    def remove_quietly(self) -> None:
        """Remove the folder while another error is on its way (that one is the one to report)."""
        shutil.rmtree(self.dir, ignore_errors=True)

    def _save(self) -> None:
        data = {"format": FORMAT, **self.key, "tile": self.tile, "segments": self.segments}
        tmp = self.dir / (MANIFEST + ".tmp")
        try:
            with open(tmp, "w") as f:
                json.dump(data, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.dir / MANIFEST)
        except OSError as e:
            raise output_error(e, self.dir) from e


class SegmentSink:
    """The destination's writer, every frame also kept in segments of ``segment_frames`` frames.

    ``write``/``close`` as a writer's. At ``begin`` (else before the first new frame, or at ``close``)
    the frames of an earlier run's complete segments go to the destination first. All of it runs in the encode thread,
    beside the model: an uninterrupted run has nothing left to join at the end."""

    def __init__(self, work: Work, writer, width, height, fps, bit_depth, segment_frames: int, up=None):
        self.work, self.writer, self.size, self.fps, self.bits = work, writer, (width, height), fps, bit_depth
        self.segment_frames, self.up = max(1, segment_frames), up
        self.segment = None
        self.tmp: Optional[Path] = None
        self.count = 0
        self.replayed = False
        self.segment_seconds = 0.0  # writing segments: the cost of being resumable
        self.replay_seconds = 0.0  # reading an earlier run's segments into the destination

    def begin(self) -> None:
        """Feed an earlier run's frames to the destination now (the encode thread, as it starts)."""
        if not self.replayed:
            self._replay()

    def _replay(self) -> None:
        self.replayed = True
        t = time.perf_counter()
        for raw in self.work.frames(list(self.work.segments)):
            self.writer.write(raw)
        self.replay_seconds = time.perf_counter() - t

    def write(self, frame: np.ndarray) -> None:
        from theris_cli.video.encode import VideoWriter

        if not self.replayed:
            self._replay()
        # a destination in lossless FFV1 of the same frames: its packets are the segment's, copied
        # as it writes them (a second FFV1 encoder would hold as much memory as its own, and take
        # as long)
        if isinstance(self.writer, VideoWriter) and self.writer.stores_as(self.bits):
            self.writer.packet_tap = self._keep_packets
            self.writer.write(frame)
            return
        t = time.perf_counter()
        if self.segment is None:
            self.tmp = self.work.dir / f"{len(self.work.segments):05d}.partial.mkv"
            self.segment = VideoWriter(self.tmp, *self.size, self.fps, self.bits, codec="ffv1")
            self.count = 0
        self.segment.write(frame)
        self.count += 1
        if self.count >= self.segment_frames:
            self._complete()
        self.segment_seconds += time.perf_counter() - t
        self.writer.write(frame)

    def _keep_packets(self, packets: list) -> None:
        """One frame's packets of the destination into the segment (`write`, FFV1 destinations)."""
        from theris_cli.video.encode import PacketCopy

        t = time.perf_counter()
        if self.segment is not None and self.count >= self.segment_frames and packets and packets[0].is_keyframe:
            self._complete()  # FFV1 frames between keyframes read the coder states before them: cut at one
        if self.segment is None:
            self.tmp = self.work.dir / f"{len(self.work.segments):05d}.partial.mkv"
            self.segment = PacketCopy(self.tmp, self.writer)
            self.count = 0
        self.segment.write(packets)
        self.count += 1
        self.segment_seconds += time.perf_counter() - t

    def _complete(self) -> None:
        self.segment.close()
        self.segment = None
        tile = getattr(self.up, "tile", None) if self.up is not None else None
        self.work.add(self.tmp, self.count, tile)

    def abort(self) -> None:
        """After a failure: keep the frames written so far as a complete segment (they are right:
        they come in order), leave the destination's writer to its owner."""
        if self.segment is not None:
            self._complete()

    def close(self) -> None:
        if not self.replayed:
            self._replay()
        if self.segment is not None:
            t = time.perf_counter()
            self._complete()
            self.segment_seconds += time.perf_counter() - t
        self.writer.close()


def _read_manifest(folder: Path) -> Optional[dict]:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("segments"), list):
        return None
    return data


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_tree(path: Path) -> None:
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError as e:
        raise OutputError(f"cannot remove {path}: {e.strerror or e}; remove it by hand and rerun") from None
